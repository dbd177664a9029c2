"""The agent's download step against a real local HTTP server that misbehaves on purpose.

Each test is one fault from the field: a dropped connection, a server ignoring Range, a trickle, an
endless body, a lying length, a wrong digest, a full disk. No timing assertions: deadlines are small
and the tests check which error comes out and what is left on disk.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import urllib3

from agent.errors import (
    DeadlineExceeded,
    DigestMismatch,
    DiskFull,
    DownloadFailed,
    TooLarge,
    UnsupportedSource,
)
from agent.fetch import KIB, DownloadSettings, partial_path
from agent.fetch.http import MAX_REDIRECTS, download
from tests.disks import fill, mounted
from tests.httpserver import ArtifactServer, Behaviour, QuietHandler, serve_handler

REPO = Path(__file__).resolve().parent.parent
BODY = random.Random(7).randbytes(200 * KIB)
SHA = hashlib.sha256(BODY).hexdigest()
# No free-space margin (tmp dirs are small in some sandboxes); a deadline no healthy test gets near.
SETTINGS = DownloadSettings(free_space_margin_bytes=0, deadline_seconds=60, read_timeout_seconds=10)


@pytest.fixture
def server() -> Iterator[ArtifactServer]:
    with ArtifactServer() as running:
        yield running


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs, so ENOSPC comes from the kernel; skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    with mounted(mount, "-t", "tmpfs", "-o", "size=1m", "tmpfs"):
        yield mount


def fetch(url: str, dest: Path, settings: DownloadSettings = SETTINGS, **kwargs: Any) -> Path:
    return download(url, dest, sha256=SHA, size=len(BODY), settings=settings, **kwargs)


def test_good_artifact_lands_at_dest_without_partial(server: ArtifactServer, tmp_path: Path) -> None:
    dest = tmp_path / "app-1.0.0.tar.gz"

    assert fetch(server.add("/a", BODY), dest) == dest

    assert dest.read_bytes() == BODY
    assert not partial_path(dest).exists()


def test_download_resumes_with_range_after_connection_drops_mid_body(
    server: ArtifactServer, tmp_path: Path
) -> None:
    url = server.add("/a", BODY, Behaviour(fail_first_requests=1, fail_after_fraction=0.4))
    dest = tmp_path / "a.tar"
    cut = int(len(BODY) * 0.4)

    with pytest.raises(DownloadFailed):
        fetch(url, dest)
    assert partial_path(dest).read_bytes() == BODY[:cut]
    fetch(url, dest)

    first, second = server.seen("/a")
    assert "Range" not in first.headers
    assert second.headers["Range"] == f"bytes={cut}-"
    assert dest.read_bytes() == BODY


def test_server_ignoring_range_restarts_cleanly_from_zero(server: ArtifactServer, tmp_path: Path) -> None:
    url = server.add("/a", BODY, Behaviour(fail_first_requests=1, ignore_range=True))
    dest = tmp_path / "a.tar"

    with pytest.raises(DownloadFailed):
        fetch(url, dest)
    fetch(url, dest)

    assert server.seen("/a")[1].headers["Range"].startswith("bytes=")
    assert dest.read_bytes() == BODY  # not the partial followed by the whole body


def test_trickling_server_aborts_at_deadline_and_keeps_partial(
    server: ArtifactServer, tmp_path: Path
) -> None:
    url = server.add("/a", BODY, Behaviour(trickle_bytes_per_second=4 * KIB))
    dest = tmp_path / "a.tar"
    settings = DownloadSettings(free_space_margin_bytes=0, deadline_seconds=1.5, read_timeout_seconds=10)

    with pytest.raises(DeadlineExceeded):
        fetch(url, dest, settings)

    assert not dest.exists()
    assert partial_path(dest).stat().st_size < len(BODY)  # kept for the next attempt to resume


def test_endless_body_aborts_at_cap_without_writing_past_size(server: ArtifactServer, tmp_path: Path) -> None:
    # RLIMIT_FSIZE = size makes the kernel kill the process (SIGXFSZ) on the first byte written past
    # the cap, so reaching the TooLarge line proves the downloader never wrote more than size.
    url = server.add("/a", BODY[: 64 * KIB], Behaviour(endless=True))
    dest = tmp_path / "a.tar"
    script = textwrap.dedent(
        f"""
        import resource
        import signal
        from pathlib import Path
        from agent.errors import TooLarge
        from agent.fetch import DownloadSettings
        from agent.fetch.http import MAX_REDIRECTS, download
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the kernel default kills
        resource.setrlimit(resource.RLIMIT_FSIZE, ({len(BODY)}, {len(BODY)}))
        try:
            download({url!r}, Path({str(dest)!r}), sha256={SHA!r}, size={len(BODY)},
                     settings=DownloadSettings(free_space_margin_bytes=0, deadline_seconds=60))
        except TooLarge as exc:
            print("TooLarge", exc)
        """
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}

    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("TooLarge")
    assert not partial_path(dest).exists()
    assert not dest.exists()


def test_oversized_content_length_is_refused_before_the_body(server: ArtifactServer, tmp_path: Path) -> None:
    url = server.add("/a", BODY, Behaviour(content_length=10 * len(BODY)))
    dest = tmp_path / "a.tar"

    with pytest.raises(TooLarge, match="larger than the declared"):
        fetch(url, dest)

    assert not partial_path(dest).exists()


@pytest.mark.parametrize(
    "content_length",
    [pytest.param(len(BODY) // 2, id="short-length-truncates"), pytest.param(len(BODY) - 1, id="one-short")],
)
def test_lying_content_length_is_an_incomplete_download_to_resume(
    server: ArtifactServer, tmp_path: Path, content_length: int
) -> None:
    url = server.add("/a", BODY, Behaviour(content_length=content_length))
    dest = tmp_path / "a.tar"

    with pytest.raises(DownloadFailed, match="ended after"):
        fetch(url, dest)

    assert partial_path(dest).read_bytes() == BODY[:content_length]
    assert not dest.exists()


def test_server_unable_to_resume_drops_the_partial_for_a_fresh_start(
    server: ArtifactServer, tmp_path: Path
) -> None:
    url = server.add("/a", BODY[:1000])  # the server's copy is shorter than what we already hold
    dest = tmp_path / "a.tar"
    partial_path(dest).write_bytes(BODY[:5000])

    with pytest.raises(DownloadFailed, match="416"):
        fetch(url, dest)

    assert server.seen("/a")[0].headers["Range"] == "bytes=5000-"
    assert not partial_path(dest).exists()


def test_wrong_digest_is_rejected_and_nothing_is_kept(server: ArtifactServer, tmp_path: Path) -> None:
    url = server.add("/a", BODY[:-1] + b"X")
    dest = tmp_path / "a.tar"

    with pytest.raises(DigestMismatch) as caught:
        fetch(url, dest)

    assert caught.value.expected == SHA
    assert not dest.exists()
    assert not partial_path(dest).exists()


def test_server_error_status_is_a_transport_failure(server: ArtifactServer, tmp_path: Path) -> None:
    url = server.add("/a", BODY, Behaviour(status=503))

    with pytest.raises(DownloadFailed, match="HTTP 503"):
        fetch(url, tmp_path / "a.tar")


def test_unreachable_server_is_a_transport_failure(tmp_path: Path) -> None:
    with ArtifactServer() as stopped:
        url = stopped.add("/a", BODY)
    with pytest.raises(DownloadFailed):
        fetch(url, tmp_path / "a.tar")


@contextmanager
def redirector(location_for: dict[str, str]) -> Iterator[str]:
    """A real server answering ``302 Location: location_for[path]``; yields its base URL."""

    class Redirect(QuietHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", location_for[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serve_handler(Redirect) as base_url:
        yield base_url


def test_redirected_download_resumes_at_the_final_location(server: ArtifactServer, tmp_path: Path) -> None:
    target = server.add("/cdn/a", BODY)
    dest = tmp_path / "a.tar"
    partial_path(dest).write_bytes(BODY[:5000])

    with redirector({"/a": "/b", "/b": target}) as base:
        fetch(f"{base}/a", dest)

    assert server.seen("/cdn/a")[0].headers["Range"] == "bytes=5000-"  # kept across both hops
    assert dest.read_bytes() == BODY


def test_redirect_loop_gives_up_after_the_bound(tmp_path: Path) -> None:
    hops = {f"/{n}": f"/{n + 1}" for n in range(MAX_REDIRECTS + 5)}

    with (
        redirector(hops) as base,
        pytest.raises(DownloadFailed, match=f"more than {MAX_REDIRECTS} redirects"),
    ):
        fetch(f"{base}/0", tmp_path / "a.tar")


def test_redirect_to_a_local_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(BODY)

    with redirector({"/a": secret.as_uri()}) as base, pytest.raises(DownloadFailed, match="not http"):
        fetch(f"{base}/a", tmp_path / "a.tar")

    assert not (tmp_path / "a.tar").exists()


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def use_proxy_environment(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_download_goes_through_the_proxy_the_environment_names(
    server: ArtifactServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test server plays the proxy: it answers the absolute-form request line for a host that
    # does not resolve, so only a request sent through the proxy can succeed.
    url = "http://artifacts.invalid/a"
    server.add(url, BODY)
    use_proxy_environment(monkeypatch, HTTP_PROXY=server.base_url)

    fetch(url, tmp_path / "a.tar")

    assert [seen.path for seen in server.seen(url)] == [url]
    assert (tmp_path / "a.tar").read_bytes() == BODY


def test_no_proxy_host_is_fetched_directly(
    server: ArtifactServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{sock.getsockname()[1]}"
    use_proxy_environment(monkeypatch, HTTP_PROXY=dead_proxy, NO_PROXY="127.0.0.1,.example.org")

    fetch(server.add("/a", BODY), tmp_path / "a.tar")

    assert (tmp_path / "a.tar").read_bytes() == BODY


def test_verified_dest_from_before_a_crash_is_not_fetched_again(
    server: ArtifactServer, tmp_path: Path
) -> None:
    dest = tmp_path / "a.tar"
    dest.write_bytes(BODY)

    fetch(server.add("/a", BODY), dest)

    assert server.seen("/a") == []


def test_disk_too_small_is_refused_before_any_request(server: ArtifactServer, small_disk: Path) -> None:
    url = server.add("/a", BODY)

    with pytest.raises(DiskFull, match="needs"):
        download(url, small_disk / "a.tar", sha256=SHA, size=2 * 1024 * KIB, settings=SETTINGS)

    assert server.seen("/a") == []


def test_disk_filling_up_during_download_is_disk_full_and_frees_the_partial(
    server: ArtifactServer, small_disk: Path
) -> None:
    url = server.add("/a", BODY)
    filler = small_disk / "other-process-log"

    class AnotherProcessFillsTheDiskOnResponse(urllib3.PoolManager):
        """After the free-space check and the headers, before the first body byte is written."""

        def urlopen(  # type: ignore[override]  # as urllib3's own PoolManager.urlopen
            self, method: str, url: str, redirect: bool = True, **kw: Any
        ) -> urllib3.BaseHTTPResponse:
            response = super().urlopen(method, url, redirect=redirect, **kw)
            fill(small_disk)
            return response

    with AnotherProcessFillsTheDiskOnResponse() as pool, pytest.raises(DiskFull):
        fetch(url, small_disk / "a.tar", pool=pool)

    assert filler.exists()
    assert not partial_path(small_disk / "a.tar").exists()


@pytest.mark.parametrize(
    ("content", "error"),
    [
        pytest.param(BODY, None, id="good-copy"),
        pytest.param(BODY[:-1] + b"X", DigestMismatch, id="wrong-digest"),
        pytest.param(BODY + b"extra", TooLarge, id="larger-than-declared"),
        pytest.param(BODY[:100], DownloadFailed, id="shorter-than-declared"),
    ],
)
def test_file_url_gets_the_same_caps_and_digest_check(
    tmp_path: Path, content: bytes, error: type[Exception] | None
) -> None:
    source = tmp_path / "source.tar"
    source.write_bytes(content)
    dest = tmp_path / "out" / "a.tar"
    dest.parent.mkdir()

    if error is None:
        fetch(source.as_uri(), dest)
        assert dest.read_bytes() == BODY
    else:
        with pytest.raises(error):
            fetch(source.as_uri(), dest)
        assert not dest.exists()


def test_missing_file_url_is_a_transport_failure(tmp_path: Path) -> None:
    with pytest.raises(DownloadFailed):
        fetch((tmp_path / "nope.tar").as_uri(), tmp_path / "a.tar")


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("ftp://example.org/a.tar", id="ftp"),
        pytest.param("file://server/a.tar", id="remote-file"),
    ],
)
def test_unsupported_source_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(UnsupportedSource):
        fetch(url, tmp_path / "a.tar")


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"read_timeout_seconds": 0}, id="zero-read-timeout"),
        pytest.param({"min_bytes_per_second": 0}, id="zero-rate"),
        pytest.param({"deadline_seconds": 30 * 86_400}, id="month-long-deadline"),
        pytest.param({"chunk_bytes": 1024**3}, id="gigabyte-chunks"),
        pytest.param({"free_space_margin_bytes": -1}, id="negative-margin"),
    ],
)
def test_out_of_bounds_settings_are_refused(overrides: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="DownloadSettings"):
        DownloadSettings(**overrides)  # type: ignore[arg-type]


def test_default_deadline_grows_with_size_above_a_floor() -> None:
    settings = DownloadSettings()

    assert settings.deadline_for(0) == settings.deadline_floor_seconds
    assert settings.deadline_for(100 * 1024 * KIB) > settings.deadline_for(1024 * KIB)
