"""The real artifact downloader (HTTP, HTTPS and ``file://``): the only agent module using ``requests``.

One call is one attempt; the converge loop retries :class:`~agent.errors.DownloadFailed` and
:class:`~agent.errors.DeadlineExceeded` later, and the next attempt resumes where this one stopped:

1. free space is checked up front (size still missing + margin, else ``DiskFull``);
2. bytes go to ``<dest>.part``; an existing partial is resumed with ``Range: bytes=N-`` (a ``206``
   appends, a ``200`` restarts from zero);
3. never more than ``size`` bytes are written: a larger ``Content-Length`` or ``Content-Range``, or a
   body that keeps coming, aborts with ``TooLarge`` and deletes the partial;
4. an overall deadline (derived from the size) and a per-read timeout stop trickling or silent
   servers with ``DeadlineExceeded``, keeping the partial; ENOSPC while writing is ``DiskFull``;
5. the partial is fsynced, its sha256 checked (``DigestMismatch`` deletes it), then it is renamed to
   ``dest`` and the directory fsynced.

Bodies are read with ``read1`` (whatever the socket has, at most one chunk) so the deadline is checked
as bytes trickle in, and with ``Accept-Encoding: identity`` so sizes and ranges count stored bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from urllib.request import url2pathname

from agent.errors import (
    DeadlineExceeded,
    DigestMismatch,
    DiskFull,
    DownloadFailed,
    TooLarge,
    UnsupportedSource,
)
from agent.fetch import DownloadSettings, partial_path
from agent.state.atomic import NO_SPACE_ERRNOS, fsync_dir

if TYPE_CHECKING:
    import requests

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def download(
    url: str,
    dest: Path,
    *,
    sha256: str,
    size: int,
    settings: DownloadSettings = DownloadSettings(),  # noqa: B008 - frozen, so sharing it is safe
    session: requests.Session | None = None,
) -> Path:
    """Make ``dest`` hold the ``size`` bytes at ``url`` that hash to ``sha256``; returns ``dest``."""
    if dest.is_file() and dest.stat().st_size == size and _sha256_of(dest, settings.chunk_bytes) == sha256:
        return dest  # a crash after the rename: the work is done
    part = partial_path(dest)
    deadline = time.monotonic() + settings.deadline_for(size)
    scheme = urlsplit(url).scheme
    try:
        if scheme in ("http", "https"):
            _fetch_http(url, part, size, settings, deadline, session)
        elif scheme == "file":
            _copy_file(url, part, size, settings, deadline)
        else:
            raise UnsupportedSource(f"{url}: only http, https and file URLs can be downloaded")
        actual = _sha256_of(part, settings.chunk_bytes)
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
    session: requests.Session | None,
) -> None:
    start = part.stat().st_size if part.is_file() else 0
    if start > size:
        start = 0
    if start == size:
        return  # complete but unverified: let the digest decide
    _check_free_space(part, size - start, settings)
    headers = {"Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    # Imported on the first download, not with the module: requests is ~6 MB of resident memory that
    # an agent with nothing to download never needs (bench/agent_rss.py).
    import requests

    read_timeout = min(settings.read_timeout_seconds, max(deadline - time.monotonic(), 0.1))
    own = session is None
    client = requests.Session() if session is None else session
    try:
        try:
            response = client.get(
                url, headers=headers, stream=True, timeout=(settings.connect_timeout_seconds, read_timeout)
            )
        except requests.RequestException as exc:
            raise _transport_error(url, exc, deadline) from exc
        with response:
            start = _resume_offset(url, response, part, start, size)
            _write_capped(
                _body_chunks(url, response, settings.chunk_bytes, deadline), part, start, size, url, deadline
            )
    finally:
        if own:
            client.close()


def _resume_offset(url: str, response: requests.Response, part: Path, start: int, size: int) -> int:
    """Where the body starts in the artifact, after checking the status and the declared lengths.

    A server that cannot or will not resume at ``start`` costs the partial: the next try starts over.
    """
    status = response.status_code
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


def _body_chunks(url: str, response: requests.Response, chunk_bytes: int, deadline: float) -> Iterator[bytes]:
    import requests
    import urllib3.exceptions

    while True:
        try:
            chunk = response.raw.read1(chunk_bytes, decode_content=False)
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            raise _transport_error(url, exc, deadline) from exc
        if not chunk:
            return
        yield chunk


def _copy_file(url: str, part: Path, size: int, settings: DownloadSettings, deadline: float) -> None:
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
            _write_capped(iter(read, b""), part, 0, size, url, deadline)
    except OSError as exc:
        if exc.errno in NO_SPACE_ERRNOS:
            raise DiskFull(part) from exc
        raise DownloadFailed(f"{url}: {exc}") from exc


def _write_capped(
    chunks: Iterator[bytes], part: Path, start: int, size: int, url: str, deadline: float
) -> None:
    """Write the body at ``start`` of ``part``; never past ``size``; fsync; check completeness."""
    written = start
    try:
        with part.open("r+b" if start else "wb") as out:
            out.truncate(start)
            out.seek(start)
            for chunk in chunks:
                if written + len(chunk) > size:
                    raise TooLarge(url, size, written + len(chunk))
                out.write(chunk)
                written += len(chunk)
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


def _check_free_space(part: Path, missing: int, settings: DownloadSettings) -> None:
    needed = missing + settings.free_space_margin_bytes
    free = shutil.disk_usage(part.parent).free
    if free < needed:
        raise DiskFull(part.parent, needed, free)


def _transport_error(url: str, exc: BaseException, deadline: float) -> DownloadFailed | DeadlineExceeded:
    if time.monotonic() >= deadline:
        return DeadlineExceeded(f"{url}: deadline passed: {exc}")
    return DownloadFailed(f"{url}: {exc}")


def _sha256_of(path: Path, chunk_bytes: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()
