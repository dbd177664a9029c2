"""status.html in a real browser: headless Debian ``chromium`` loads the page from a file, and we
check both what it parsed (``--dump-dom``) and what it drew (the screenshot's pixels).

The pixel check decodes the PNG with the standard library and looks for the legend's colours, so
the test fails if the inline SVG stops rendering (a broken pattern, a CSS typo, a blank page), not
only if Chromium crashes. The same fleet as ``tests/test_pages.py``: three waves, ~60 robots.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from collections import Counter
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

import pytest

from controller.pages import render_status_html
from controller.records.model import DeploymentRecord
from fleetcd.vocabulary import Activity
from tests.conftest import require_service
from tests.test_pages import demo_halt_fleet, sample_fleet

WINDOW = (1280, 900)
CHROMIUM_TIMEOUT_SECONDS = 120  # a hang guard for a wedged browser, not a speed target

# What the grid and bars must show, as drawn: Okabe-Ito fills from controller/pages/html.py.
SUCCEEDED_RGB = (0x00, 0x9E, 0x73)
IN_PROGRESS_RGB = (0x56, 0xB4, 0xE9)
OFFLINE_RGB = (0x3D, 0x3D, 0x3D)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    require_service(
        "chromium", binary is not None, "no `chromium` on PATH (Debian package chromium; dev/bootstrap)"
    )
    assert binary is not None
    command = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", *args,
    ]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_SECONDS, check=False
    )


def render(tmp_path: Path) -> Path:
    page = tmp_path / "status.html"
    page.write_text(render_status_html(sample_fleet().view()), encoding="utf-8")
    return page


def screenshot(page: Path, png: Path, tmp_path: Path, window: tuple[int, int] = WINDOW) -> None:
    result = chromium(
        tmp_path, f"--screenshot={png}", f"--window-size={window[0]},{window[1]}", page.as_uri()
    )
    assert png.exists(), f"chromium wrote no screenshot: {result.stderr[-2000:]}"


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB/RGBA PNG, unfiltered (RFC 2083 §6)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, bytearray(), b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format depth={depth} colour={colour}"
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(bytes(idat)), width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line) if bpp == 3 else bytes(b for j, b in enumerate(line) if j % 4 != 3))
        previous = line
    return width, height, rows


def pixel_counts(rows: list[bytes]) -> Counter[tuple[int, int, int]]:
    counts: Counter[tuple[int, int, int]] = Counter()
    for row in rows:
        counts.update(zip(row[0::3], row[1::3], row[2::3], strict=True))
    return counts


def near(counts: Counter[tuple[int, int, int]], rgb: tuple[int, int, int], tolerance: int = 3) -> int:
    return sum(
        n for c, n in counts.items() if all(abs(a - b) <= tolerance for a, b in zip(c, rgb, strict=True))
    )


def test_status_page_parses_in_chromium_with_every_wave(tmp_path: Path) -> None:
    result = chromium(tmp_path, "--dump-dom", render(tmp_path).as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    for wave in ("staging", "canary", "production"):
        assert f"<h3>{wave}</h3>" in dom
    assert dom.count('<svg class="grid"') == 3
    assert dom.count("<rect x=") >= 60
    assert "<script" not in dom


@pytest.mark.parametrize("window", [WINDOW], ids=["1280x900"])
def test_status_page_draws_bars_and_robot_grid_in_chromium(tmp_path: Path, window: tuple[int, int]) -> None:
    png = tmp_path / "status.png"
    screenshot(render(tmp_path), png, tmp_path, window)
    data = png.read_bytes()
    assert len(data) > 20_000, "a blank or near-blank screenshot"

    width, height, rows = decode_png(data)
    assert (width, height) == window
    counts = pixel_counts(rows)
    # Each colour must cover more than its legend key (a 12x12 square) does: bars and grid drew.
    assert near(counts, SUCCEEDED_RGB) > 2_000
    assert near(counts, IN_PROGRESS_RGB) > 500
    assert near(counts, OFFLINE_RGB) > 300
    background = counts.most_common(1)[0][1]
    assert background < width * height * 0.9, "the page is mostly one colour: nothing rendered"


class PageText(HTMLParser):
    """The DOM Chromium dumped, as the text of each table row and each SVG ``<title>``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.titles: list[str] = []
        self.heads: list[str] = []
        self._cell: list[str] | None = None
        self._title: list[str] | None = None
        self._head: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "title":
            self._title = []
        elif tag == "div" and ("class", "wave-head") in attrs:
            self._head = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "title" and self._title is not None:
            self.titles.append("".join(self._title))
            self._title = None
        elif tag == "div" and self._head is not None:
            self.heads.append(" ".join("".join(self._head).split()))
            self._head = None

    def handle_data(self, data: str) -> None:
        for part in (self._cell, self._title, self._head):
            if part is not None:
                part.append(data)


def newest_success(records: Sequence[DeploymentRecord]) -> DeploymentRecord | None:
    done = [r for r in records if r.activity is Activity.DEPLOYED]
    return max(done, key=lambda r: r.created_at, default=None)


def test_demo_fleet_page_in_chromium_says_what_the_records_say(tmp_path: Path) -> None:
    """The demo's page after its halt, as Chromium parsed it, checked against the records."""
    fleet = demo_halt_fleet()
    page = tmp_path / "status.html"
    page.write_text(render_status_html(fleet.view()), encoding="utf-8")
    result = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    dom = PageText()
    dom.feed(result.stdout)
    rollout = fleet.rollouts[0]

    # Each robot's square says what its records say it runs (the rollback's or the agent's own).
    for device_id, file in fleet.files.items():
        (title,) = [t for t in dom.titles if t.startswith(f"{device_id} (")]
        ours = [r for r in file.records if r.generation == rollout.generation]
        if any(r.activity is Activity.ROLLED_BACK for r in ours):  # its agent went back by itself
            running = newest_success([r for r in file.records if r.generation < rollout.generation])
        else:
            running = newest_success(file.records)
        assert running is not None
        if ours and max(ours, key=lambda r: r.created_at).version != running.version:
            assert f"runs {running.version} (deployment {rollout.version})" in title, title
        else:
            assert f"runs {running.version}," in title or title.endswith(f"runs {running.version}"), title
        if not ours:
            assert f"{device_id} ({fleet.devices[device_id].site}): not dispatched (halted)," in title

    # No wave of the halted rollout says queued; the undispatched wave says what it is.
    undispatched = [w for w in rollout.waves if not any(fleet.files[d].records[1:] for d in w.devices)]
    assert [w.name for w in undispatched] == ["production"]
    (head,) = [h for h in dom.heads if h.startswith("production")]
    assert (
        f"0/{len(undispatched[0].devices)} ok · {len(undispatched[0].devices)} not dispatched (halted)"
        in head
    )
    assert not any("queued" in h for h in dom.heads)

    # A cohort's robots add up over the waves that hold them, and each wave's share is its own.
    header = next(r for r in dom.rows if r and r[0] == "cohort")
    for row in (r for r in dom.rows if len(r) == len(header) and r[0] in fleet.cohorts):
        cells = dict(zip(header, row, strict=True))
        members = set(fleet.cohorts[row[0]].devices)
        assert int(cells["robots"]) == len(members)
        for wave in rollout.waves:
            share = len(members & set(wave.devices))
            if share and "in waves:" in cells["waves"]:
                assert f"{wave.name} {share}" in cells["waves"]
            elif share:
                assert cells["waves"] == f"in wave {wave.name}"
        assert "queued" not in cells["status"]

    # The failure's message is whole in the attention table, never cut mid-word.
    (failed,) = [r for r in dom.rows if r and r[0] == "amr-tyo-02"]
    message = fleet.files["amr-tyo-02"].records[-1].events[-1].message
    assert failed[-1] == message
    assert failed[3] == "1.0.0 (deployment 1.1.0)"
