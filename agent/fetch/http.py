"""The real artifact downloader (HTTP, HTTPS and ``file://``): the only agent module fetching artifacts.

It speaks HTTP through ``urllib3`` directly, not ``requests``: one download through ``requests``
costs a robot +8.2 MiB resident (charset_normalizer, idna, certifi...), ``urllib3`` 4.0 MiB
(bench/agent_rss.py; issue 4 caps the whole agent at 60 MB).

One call is one attempt; the converge loop retries :class:`~agent.errors.DownloadFailed` and
:class:`~agent.errors.DeadlineExceeded` later, and the next attempt resumes where this one stopped:

1. free space is checked up front (size still missing + a 1 MiB margin, else ``DiskFull``);
2. bytes go to ``<dest>.part``; an existing partial is resumed with ``Range: bytes=N-`` (a ``206``
   appends, a ``200`` restarts from zero);
3. never more than ``size`` bytes are written: a larger ``Content-Length`` or ``Content-Range``, or a
   body that keeps coming, aborts with ``TooLarge`` and deletes the partial;
4. an overall deadline (derived from the size) and a per-read timeout stop trickling or silent
   servers with ``DeadlineExceeded``, keeping the partial; ENOSPC while writing is ``DiskFull``;
5. the partial is fsynced, its sha256 checked (``DigestMismatch`` deletes it), then it is renamed to
   ``dest`` and the directory fsynced.

HTTP as ``requests`` did it, with what urllib3 leaves out made explicit:

* redirects are followed, at most :data:`MAX_REDIRECTS` hops, each hop keeping the ``Range``;
* no retries inside a call (the loop retries, with backoff);
* ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` and ``NO_PROXY`` (host suffixes; no CIDR ranges)
  from the environment, chosen per hop (:func:`urllib.request.getproxies`); http proxies only;
* HTTPS is verified against the system trust store (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` honoured by
  OpenSSL), not the certifi bundle ``requests`` ships: a fleet's own CA goes where the OS looks.

Bodies are read with ``read1`` (whatever the socket has, at most one chunk) so the deadline is checked
as bytes trickle in, and with ``Accept-Encoding: identity`` so sizes and ranges count stored bytes.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit
from urllib.request import getproxies, proxy_bypass, url2pathname

from agent.errors import (
    DeadlineExceeded,
    DigestMismatch,
    DiskFull,
    DownloadFailed,
    TooLarge,
    UnsupportedSource,
)
from agent.fetch import DownloadSettings, Progress, partial_path
from agent.state.atomic import NO_SPACE_ERRNOS, fsync_dir
from fleetcd.compat import path_sha256

if TYPE_CHECKING:
    import urllib3

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
MAX_REDIRECTS = 10  # hops before a download attempt gives up (requests allowed 30; CDNs use 1-3)
USER_AGENT = "fleetcd-agent"


def download(
    url: str,
    dest: Path,
    *,
    sha256: str,
    size: int,
    settings: DownloadSettings = DownloadSettings(),  # noqa: B008 - frozen, so sharing it is safe
    pool: urllib3.PoolManager | None = None,
    progress: Progress | None = None,
) -> Path:
    """Make ``dest`` hold the ``size`` bytes at ``url`` that hash to ``sha256``; returns ``dest``.

    ``pool`` is used for every HTTP request as given (no proxy lookup); by default each call builds
    its own, honouring the proxy environment, and closes it. ``progress`` is told the bytes on disk
    after every chunk written (resumed ones included); it must return at once and never raise.
    """
    if dest.is_file() and dest.stat().st_size == size and path_sha256(dest, settings.chunk_bytes) == sha256:
        if progress is not None:
            progress(size)
        return dest  # a crash after the rename: the work is done
    part = partial_path(dest)
    deadline = time.monotonic() + settings.deadline_for(size)
    scheme = urlsplit(url).scheme
    try:
        if scheme in ("http", "https"):
            _fetch_http(url, part, size, settings, deadline, pool, progress)
        elif scheme == "file":
            _copy_file(url, part, size, settings, deadline, progress)
        else:
            raise UnsupportedSource(f"{url}: only http, https and file URLs can be downloaded")
        actual = path_sha256(part, settings.chunk_bytes)
        if actual != sha256:
            raise DigestMismatch(url, sha256, actual)
    except (TooLarge, DiskFull, DigestMismatch):
        part.unlink(missing_ok=True)  # useless bytes, and they may be what fills the disk
        raise
    part.replace(dest)
    fsync_dir(dest.parent)
    return dest


def _fetch_http(
    url: str,
    part: Path,
    size: int,
    settings: DownloadSettings,
    deadline: float,
    pool: urllib3.PoolManager | None,
    progress: Progress | None,
) -> None:
    start = part.stat().st_size if part.is_file() else 0
    if start > size:
        start = 0
    if start == size:
        return  # complete but unverified: let the digest decide
    _check_free_space(part, size - start, settings)
    headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    # Imported on the first download, not with the module: an agent with nothing to download never
    # pays for urllib3 (bench/agent_rss.py).
    import urllib3

    read_timeout = min(settings.read_timeout_seconds, max(deadline - time.monotonic(), 0.1))
    timeout = urllib3.Timeout(connect=settings.connect_timeout_seconds, read=read_timeout)
    managers: dict[str | None, urllib3.PoolManager] = {}
    try:
        response = _get(
            url, headers, timeout, deadline, lambda hop: _manager_for(hop, managers) if pool is None else pool
        )
        try:
            start = _resume_offset(url, response, part, start, size)
            chunks = _body_chunks(url, response, settings.chunk_bytes, deadline)
            _write_capped(chunks, part, start, size, url, deadline, progress)
        finally:
            response.close()  # an aborted body must not go back to the pool half read
            response.release_conn()
    finally:
        for manager in managers.values():
            manager.clear()


def _get(
    url: str,
    headers: dict[str, str],
    timeout: urllib3.Timeout,
    deadline: float,
    manager_for: Callable[[str], urllib3.PoolManager],
) -> urllib3.BaseHTTPResponse:
    """GET ``url``, following up to :data:`MAX_REDIRECTS` redirects, each through its own proxy choice."""
    import urllib3

    hop = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = manager_for(hop).urlopen(
                "GET",
                hop,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                timeout=timeout,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _transport_error(url, exc, deadline) from exc
        location = response.get_redirect_location()
        if not location:
            return response
        response.close()  # a redirect's body is never read: it could be anything, of any length
        response.release_conn()
        hop = urljoin(hop, location)
        if urlsplit(hop).scheme not in ("http", "https"):
            raise DownloadFailed(f"{url}: redirected to {hop}, which is not http or https")
    raise DownloadFailed(f"{url}: more than {MAX_REDIRECTS} redirects")


def _manager_for(url: str, managers: dict[str | None, urllib3.PoolManager]) -> urllib3.PoolManager:
    """The pool for ``url``: through the environment's proxy for its scheme unless NO_PROXY spares it."""
    import urllib3

    parts = urlsplit(url)
    proxies = getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and proxy_bypass(parts.hostname or ""):
        proxy = None
    if proxy not in managers:
        managers[proxy] = urllib3.ProxyManager(proxy) if proxy else urllib3.PoolManager()
    return managers[proxy]


def _resume_offset(url: str, response: urllib3.BaseHTTPResponse, part: Path, start: int, size: int) -> int:
    """Where the body starts in the artifact, after checking the status and the declared lengths.

    A server that cannot or will not resume at ``start`` costs the partial: the next try starts over.
    """
    status = response.status
    if status == 200:
        start = 0  # the server ignored the Range: take the whole body
    elif status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if match is None or int(match[1]) != start:
            part.unlink(missing_ok=True)
            got = response.headers.get("Content-Range")
            raise DownloadFailed(f"{url}: asked for bytes {start}-, got Content-Range {got!r}")
        if match[3] != "*" and int(match[3]) > size:
            raise TooLarge(url, size, int(match[3]))
    elif status == 416:
        part.unlink(missing_ok=True)
        raise DownloadFailed(f"{url}: server cannot resume at byte {start} (HTTP 416)")
    else:
        raise DownloadFailed(f"{url}: HTTP {status} {response.reason}")
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and start + int(length) > size:
        raise TooLarge(url, size, start + int(length))
    return start


def _body_chunks(
    url: str, response: urllib3.BaseHTTPResponse, chunk_bytes: int, deadline: float
) -> Iterator[bytes]:
    import urllib3

    while True:
        try:
            chunk = response.read1(chunk_bytes, decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _transport_error(url, exc, deadline) from exc
        if not chunk:
            return
        yield chunk


def _copy_file(
    url: str, part: Path, size: int, settings: DownloadSettings, deadline: float, progress: Progress | None
) -> None:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise UnsupportedSource(f"{url}: file URLs must be local (no host)")
    source = Path(url2pathname(parts.path))
    try:
        with source.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size > size:
                raise TooLarge(url, size, os.fstat(handle.fileno()).st_size)
            _check_free_space(part, size, settings)
            read: Callable[[], bytes] = lambda: handle.read(settings.chunk_bytes)  # noqa: E731
            _write_capped(iter(read, b""), part, 0, size, url, deadline, progress)
    except OSError as exc:
        if exc.errno in NO_SPACE_ERRNOS:
            raise DiskFull(part) from exc
        raise DownloadFailed(f"{url}: {exc}") from exc


def _write_capped(
    chunks: Iterator[bytes],
    part: Path,
    start: int,
    size: int,
    url: str,
    deadline: float,
    progress: Progress | None = None,
) -> None:
    """Write the body at ``start`` of ``part``; never past ``size``; fsync; check completeness.
    ``progress`` hears the bytes in ``part`` after each chunk (no other work in this loop)."""
    written = start
    tell = progress or _silent
    tell(written)
    try:
        with part.open("r+b" if start else "wb") as out:
            out.truncate(start)
            out.seek(start)
            for chunk in chunks:
                if written + len(chunk) > size:
                    raise TooLarge(url, size, written + len(chunk))
                out.write(chunk)
                written += len(chunk)
                tell(written)
                if time.monotonic() > deadline:
                    out.flush()
                    os.fsync(out.fileno())
                    raise DeadlineExceeded(f"{url}: deadline passed after {written} of {size} bytes")
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        if exc.errno in NO_SPACE_ERRNOS:
            raise DiskFull(part, size - start) from exc
        raise
    if written < size:
        raise DownloadFailed(f"{url}: body ended after {written} of {size} bytes; will resume")


def _silent(_done_bytes: int) -> None:
    pass


def _check_free_space(part: Path, missing: int, settings: DownloadSettings) -> None:
    needed = missing + settings.free_space_margin_bytes
    free = shutil.disk_usage(part.parent).free
    if free < needed:
        raise DiskFull(part.parent, needed, free)


def _transport_error(url: str, exc: BaseException, deadline: float) -> DownloadFailed | DeadlineExceeded:
    if time.monotonic() >= deadline:
        return DeadlineExceeded(f"{url}: deadline passed: {exc}")
    return DownloadFailed(f"{url}: {exc}")
