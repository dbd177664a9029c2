"""Every hostile file of the foundation issue, through the real ``fleetcd validate`` process.

Each must end with exit code 1, a message naming the file, the line where one exists and the
reason, and never a Python traceback: a crash would look exactly like a passing gate to a robot.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory

DEVICE = (
    "apiVersion: fleetcd.dev/v1\nkind: Device\nid: {id}\nfamily: amr\n"
    "hardware: {{model: amr-x, revision: 1}}\nsite: berlin\n"
)
BILLION_LAUGHS = (
    b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    b"b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
)

# The reason is None where it is not part of the contract: 50,000-deep nesting may trip fleetcd's
# depth limit or the YAML parser's own (libyaml in PyYAML 6.0.4 has one), depending on the backend.
HOSTILE: list[tuple[str, str, bytes, str | None]] = [
    ("billion-laughs", "devices/lol.yaml", BILLION_LAUGHS, "alias_forbidden"),
    ("deep-nesting", "devices/deep.yaml", b"a: " + b"[" * 50_000 + b"]" * 50_000 + b"\n", None),
    ("50MB-scalar", "devices/big.yaml", b"id: " + b"x" * (50 * 1024 * 1024) + b"\n", "too_large"),
    (
        "duplicate-sha256",
        "releases/dup/1.0.0.yaml",
        b"apiVersion: fleetcd.dev/v1\nkind: Release\napp: dup\nversion: '1.0.0'\nartifacts:\n"
        b"  - name: a\n    kind: app_tarball\n    url: http://127.0.0.1/a.tgz\n"
        b"    sha256: " + b"ab" * 32 + b"\n    sha256: " + b"cd" * 32 + b"\n    size: 1\n",
        "duplicate_key",
    ),
    (
        "version-1.10-unquoted",
        "releases/ver/1.10.0.yaml",
        b"apiVersion: fleetcd.dev/v1\nkind: Release\napp: ver\nversion: 1.10\n",
        "ambiguous_scalar",
    ),
    ("binary", "devices/bin.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    ("not-utf8", "devices/latin.yaml", "id: caf\u00e9\n".encode("latin-1"), "not_utf8"),
    ("unknown-field", "devices/odd.yaml", (DEVICE.format(id="odd") + "colour: red\n").encode(), "schema"),
    (
        "path-traversal-id",
        "devices/passwd.yaml",
        DEVICE.format(id="../../etc/passwd").encode(),
        "unsafe_name",
    ),
]


@pytest.mark.parametrize(("path", "content", "reason"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_file_is_rejected_by_the_cli_with_file_and_reason(
    tmp_path: Path, keys: KeyFactory, path: str, content: bytes, reason: str | None
) -> None:
    fleet = FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()
    fleet.write()
    target = fleet.root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from controller.cli import main; main()",
            "validate",
            "--repo",
            str(fleet.root),
        ],
        capture_output=True,
        timeout=120,
    )
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert done.returncode == 1, output
    assert "Traceback" not in output
    ours = [line for line in output.splitlines() if line.startswith(path)]
    assert ours, output
    if reason is not None:
        assert any(f"[{reason}]" in line for line in ours), output
    if reason in (None, "unknown_field", "schema", "unsafe_name", "duplicate_key", "ambiguous_scalar"):
        assert any(
            line.startswith(f"{path}:") and line[len(path) + 1 : len(path) + 2].isdigit() for line in ours
        )
