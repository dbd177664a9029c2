"""``fleetcd get`` on a fleet that is partly broken or partly hostile: an operator looking at it
still needs to see the rest (controller/ops/remote.py, controller/ops/listing.py).

A robot's status ref that is a blob, a commit without a report or a report that is no JSON shows
as that robot's "unreadable report" with the reason, never as an error for the whole listing. A
file on main that does not load hides only what it declares; a garbage key file does not make
every signature look unknown; and when no trust root loads the listing says so, naming the trust
root rather than a file that is fine. A real bare server, real git, real gpg; no controller runs,
so what is shown comes from main and the status refs alone.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fleetcd.compat import UTC
from fleetcd.git.refs import status_ref
from fleetcd.layout import device_path, trust_root_path
from fleetcd.reports import STATUS_FILE, StatusReport
from tests.clirun import fleetcd
from tests.fleetrepo import FleetRepoBuilder, committed_standard_fleet
from tests.gitrepos import bare_repo, git
from tests.gpgkeys import KeyFactory


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    """The standard fleet, committed; nothing has reconciled it."""
    return committed_standard_fleet(tmp_path / "fleet", keys)


@pytest.fixture
def server(tmp_path: Path, fleet: FleetRepoBuilder) -> Path:
    return bare_repo(tmp_path / "server.git")


def publish(fleet: FleetRepoBuilder, server: Path, message: str = "change") -> None:
    fleet.commit(message)
    fleet.git("push", "-q", "-f", str(server), "main")


def get(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, server: Path, what: str, *args: str
) -> tuple[int, Any, str]:
    code, out, err = fleetcd(
        capsys, "get", what, *args, "--repo", str(server), "--cache", str(tmp_path / "ops"), "-o", "json"
    )
    return code, json.loads(out) if out.strip() else None, err


def by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in rows}


def plant(server: Path, ref: str, *, blob: bytes | None = None, files: dict[str, bytes] | None = None) -> str:
    """What a robot with push access to ``ref`` could make it point at: a blob or any commit."""

    def hash_blob(data: bytes) -> str:
        done = subprocess.run(
            ["git", "hash-object", "-w", "--stdin"], input=data, cwd=server, capture_output=True, check=True
        )
        return done.stdout.decode().strip()

    if blob is not None:
        target = hash_blob(blob)
    else:
        entries = "".join(f"100644 blob {hash_blob(data)}\t{name}\n" for name, data in (files or {}).items())
        tree = (
            subprocess.run(
                ["git", "mktree"], input=entries.encode(), cwd=server, capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )
        target = git("commit-tree", tree, "-m", "a report", cwd=server).strip()
    git("update-ref", ref, target, cwd=server)
    return target


def test_hostile_status_refs_show_as_unreadable_reports_and_hide_no_other_robot(
    tmp_path: Path, fleet: FleetRepoBuilder, server: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(fleet, server)
    blob = plant(server, status_ref("amr-001"), blob=b"not a commit\n")
    plant(server, status_ref("amr-002"), files={"notes.txt": b"no report here\n"})
    plant(server, status_ref("amr-003"), files={"status.json": b"{not json"})

    code, rows, err = get(capsys, tmp_path, server, "devices")
    assert code == 0, err
    devices = by_id(rows)
    assert sorted(devices) == ["amr-001", "amr-002", "amr-003", "amr-004"]
    for robot in ("amr-001", "amr-002", "amr-003"):
        desired = devices[robot]["desired"]
        assert desired["state"] == "unreadable report", robot
        assert desired["reason"].startswith(status_ref(robot)), "the reason names the robot's own ref"
    assert (
        blob in devices["amr-001"]["desired"]["reason"] and "blob" in devices["amr-001"]["desired"]["reason"]
    )
    assert devices["amr-004"]["desired"] == {"serial": None, "state": None, "reason": None}

    code, table, _ = fleetcd(
        capsys, "get", "devices", "--repo", str(server), "--cache", str(tmp_path / "ops")
    )
    assert code == 0
    assert sum("unreadable report" in line for line in table.splitlines()) == 3


def test_a_decommissioned_robot_is_listed_as_decommissioned(
    tmp_path: Path, fleet: FleetRepoBuilder, server: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.device("amr-004", decommissioned=True)
    publish(fleet, server, "retire amr-004")
    code, rows, err = get(capsys, tmp_path, server, "devices")
    assert code == 0, err
    devices = by_id(rows)
    assert devices["amr-004"]["decommissioned"] is True and devices["amr-003"]["decommissioned"] is False
    code, table, _ = fleetcd(
        capsys, "get", "devices", "--repo", str(server), "--cache", str(tmp_path / "ops")
    )
    line = next(x for x in table.splitlines() if x.startswith("amr-004"))
    assert "berlin (decommissioned)" in line


def test_a_device_file_that_does_not_load_hides_only_that_robot(
    tmp_path: Path, fleet: FleetRepoBuilder, server: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.file(device_path("amr-004"), "id: [unterminated\n")
    publish(fleet, server, "a broken device file")
    code, rows, err = get(capsys, tmp_path, server, "devices")
    assert code == 0, err
    assert sorted(by_id(rows)) == ["amr-001", "amr-002", "amr-003"]
    code, releases, err = get(capsys, tmp_path, server, "releases")
    assert code == 0, err
    assert [(r["app"], r["version"], r["signatures"]["ok"]) for r in releases] == [("nav", "1.0.0", True)]


def test_a_garbage_key_file_does_not_make_release_signatures_unknown(
    tmp_path: Path, fleet: FleetRepoBuilder, server: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.file("keys/broken.asc", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot a key\n")
    publish(fleet, server, "a broken key file")
    code, releases, err = get(capsys, tmp_path, server, "releases")
    assert code == 0, err
    (release,) = releases
    assert (release["signatures"]["verified"], release["signatures"]["required"]) == (1, 1)
    assert release["signatures"]["ok"] is True


def test_when_no_trust_root_loads_signatures_are_unknown_naming_the_trust_root(
    tmp_path: Path, fleet: FleetRepoBuilder, server: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """fleet.yaml is fine here: the cell must not send the operator to it."""
    fleet.file(trust_root_path(1), "version: [unterminated\n")
    publish(fleet, server, "a broken trust root")
    code, releases, err = get(capsys, tmp_path, server, "releases")
    assert code == 0, err
    (release,) = releases
    assert release["signatures"]["required"] is None and release["signatures"]["ok"] is False
    code, table, _ = fleetcd(
        capsys, "get", "releases", "--repo", str(server), "--cache", str(tmp_path / "ops")
    )
    row = next(x for x in table.splitlines() if x.startswith("nav"))
    assert "unknown" in row and "trust root" in row and "fleet.yaml" not in row


def test_a_robots_report_cannot_drive_the_operators_terminal(
    tmp_path: Path, fleet: FleetRepoBuilder, server: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A robot writes its own report: a last_error or drifted path with escape sequences (clear the
    screen, retitle the window, ring the bell) and a newline must reach the table as inert text;
    -o json keeps the exact text, escaped the JSON way."""
    publish(fleet, server)
    hostile = "\x1b[2J\x1b]0;owned\x07serial\nrewound"
    report = StatusReport(
        format="fleetcd.dev/status/v1",
        device="amr-001",
        seq=1,
        agent_version="0.1.0",
        reported_at=datetime(2026, 5, 4, 9, 0, tzinfo=UTC),
        bundle_serial=3,
        last_error=f"BundleRejected: {hostile}",
        drift=[f"/etc/nav/{hostile}"],
    )
    plant(server, status_ref("amr-001"), files={STATUS_FILE: report.model_dump_json().encode()})

    code, table, err = fleetcd(
        capsys, "get", "devices", "--repo", str(server), "--cache", str(tmp_path / "ops")
    )
    assert code == 0, err
    assert not any(ch in table for ch in "\x1b\x07\r"), "no control character reaches the terminal"
    (row,) = [line for line in table.splitlines() if line.startswith("amr-001")]
    assert "serial 3, refusing: ?[2J?]0;owned?serial rewound" in row
    assert len(table.splitlines()) == 5, "the newline did not split the row"

    code, rows, err = get(capsys, tmp_path, server, "devices")
    assert code == 0, err
    assert by_id(rows)["amr-001"]["desired"]["reason"] == hostile


@pytest.mark.parametrize("approved", [True, False], ids=["approved", "unapproved"])
def test_only_an_approved_withdrawal_shows_a_release_as_withdrawn(
    tmp_path: Path,
    fleet: FleetRepoBuilder,
    server: Path,
    capsys: pytest.CaptureFixture[str],
    approved: bool,
) -> None:
    """A withdrawal file anyone could commit is in force only with its approvals (what the
    controller acts on); get must not tell the operator otherwise."""
    fleet.withdrawal("nav", "1.0.0", "leaks Wi-Fi credentials", approvers=None if approved else [])
    publish(fleet, server, "withdraw nav 1.0.0")
    remote = ["--repo", str(server), "--cache", str(tmp_path / "ops")]
    code, table, err = fleetcd(capsys, "get", "release", "nav", "1.0.0", *remote)
    assert code == 0, err
    shown = "Withdrawn by withdrawals/nav/1.0.0.yaml: leaks Wi-Fi credentials" in table
    assert shown is approved
    code, rows, err = get(capsys, tmp_path, server, "releases")
    assert code == 0, err
    (release,) = rows
    assert (release["withdrawn"] is not None) is approved
