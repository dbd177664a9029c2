"""``fleetcd get``, ``history`` and ``receipt`` against a state branch written by real reconciles.

The world is the controller scenario's (real git server, real gpg, simulated robots reporting
through real status refs); the commands run in-process through the real ``fleetcd`` group and
fetch into their own cache, as an operator's laptop would.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2
import pytest
import yaml

import tests.test_controller_scenario as scenario
from controller.reconcile.source import fetch_all, open_mirror
from controller.reconcile.statebranch import StateSnapshot, load_state
from controller.state.layout import device_file
from fleetcd.compat import UTC
from fleetcd.git.objects import Identity, commit, read_blob, ref_target, write_tree
from fleetcd.git.refs import STATE_BRANCH
from fleetcd.git.repo import tree_of
from tests.clirun import fleetcd
from tests.sim.world import CANARY, PRODUCTION, STAGING, ControllerWorld, pass_all_waves, pass_wave, roll_out

TAMPERER = Identity("mallory", "mallory@fleet.test")
world = scenario.world  # the controller scenario's world: real server, reconciles, simulated robots


def state_of(world: ControllerWorld) -> StateSnapshot:
    """The state branch as the controller last pushed it."""
    repo = open_mirror(world.settings.source)
    fetch_all(repo, world.settings.source)
    return load_state(repo)


def remote(world: ControllerWorld, tmp_path: Path) -> list[str]:
    return ["--repo", str(world.server), "--cache", str(tmp_path / "ops-cache")]


def rewrite_state(server: Path, changes: dict[str, bytes | None]) -> None:
    """A commit on the server's state branch by someone who is not the controller."""
    repo = pygit2.Repository(str(server))
    head = ref_target(repo, STATE_BRANCH)
    assert head is not None
    tree = write_tree(repo, changes, tree_of(repo, head))
    commit(repo, STATE_BRANCH, tree, "edit the state branch", [head], TAMPERER, datetime.now(UTC))


def canary_in_flight(world: ControllerWorld) -> None:
    """Staging passed; two of three canary robots deployed, the third still queued."""
    world.reconcile()
    pass_wave(world, STAGING, "staging")
    world.report_all(CANARY[:2], "deployed")
    world.clock.tick(10)
    world.reconcile()


def complete_first_generation(world: ControllerWorld) -> None:
    world.reconcile()
    pass_all_waves(world)
    world.reconcile()


def parsed(fmt: str, text: str) -> Any:
    return json.loads(text) if fmt == "json" else yaml.safe_load(text)


def test_get_rollouts_shows_wave_progress_in_every_format(
    world: ControllerWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    canary_in_flight(world)
    code, table, _ = fleetcd(capsys, "get", "rollouts", *remote(world, tmp_path))
    assert code == 0
    header, row = table.splitlines()
    assert header.split() == ["NAME", "RELEASE", "GEN", "PHASE", "WAVES", "REASON"]
    assert row.startswith("nav ")
    assert "nav@1.0.0" in row and "progressing" in row
    assert "staging ✓ canary 2/3 production …" in row
    assert header.index("RELEASE") == row.index("nav@1.0.0")  # aligned columns

    data = {fmt: parsed(fmt, fleetcd(capsys, "get", "rollouts", *remote(world, tmp_path), "-o", fmt)[1])
            for fmt in ("json", "yaml")}  # fmt: skip
    assert data["json"] == data["yaml"]
    (rollout,) = data["json"]
    assert (rollout["name"], rollout["version"], rollout["generation"]) == ("nav", "1.0.0", 1)
    waves = {w["name"]: (w["phase"], w["succeeded"], w["devices"]) for w in rollout["waves"]}
    assert waves == {
        "staging": ("passed", 1, 1),
        "canary": ("running", 2, 3),
        "production": ("pending", 0, 4),
    }


def test_get_devices_shows_running_version_and_newest_deployment(
    world: ControllerWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    canary_in_flight(world)
    code, out, _ = fleetcd(capsys, "get", "devices", *remote(world, tmp_path), "-o", "json")
    assert code == 0
    rows = {row["id"]: row for row in json.loads(out)}
    assert sorted(rows) == sorted(STAGING + CANARY + PRODUCTION)
    assert rows["can-1"]["site"] == "berlin"
    assert rows["can-1"]["connectivity"] == "online"
    assert rows["can-1"]["apps"]["nav"]["current"] == "1.0.0"
    assert rows["can-1"]["apps"]["nav"]["latest"]["status"] == "deployed"
    assert rows["can-3"]["apps"]["nav"]["current"] is None  # queued, never reported
    assert rows["can-3"]["apps"]["nav"]["latest"]["status"] == "queued"
    assert rows["prod-1"]["apps"] == {}  # production has not started

    code, table, _ = fleetcd(capsys, "get", "devices", *remote(world, tmp_path))
    lines = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert "nav 1.0.0 (deployed)" in lines["can-1"]
    assert "nav - (1.0.0 queued)" in lines["can-3"]
    assert yaml.safe_load(
        fleetcd(capsys, "get", "devices", *remote(world, tmp_path), "-o", "yaml")[1]
    ) == list(rows.values())


def test_get_releases_reports_signatures_against_the_threshold(
    world: ControllerWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world.fleet.release("nav", "1.1.0", signers=[])  # published, but nobody signed it
    world.merge("nav 1.1.0, unsigned")
    code, out, _ = fleetcd(capsys, "get", "releases", *remote(world, tmp_path), "-o", "json")
    assert code == 0
    sigs = {(r["app"], r["version"]): r["signatures"] for r in json.loads(out)}
    assert sigs[("nav", "1.0.0")] == {"verified": 1, "required": 1, "signers": ["release-bot"], "ok": True}
    assert sigs[("nav", "1.1.0")]["verified"] == 0 and sigs[("nav", "1.1.0")]["ok"] is False
    table = fleetcd(capsys, "get", "releases", *remote(world, tmp_path))[1].splitlines()
    assert "1/1 verified" in table[1] and "0/1 below threshold" in table[2]


def test_history_lists_a_robots_records_and_audit_lines_newest_first(
    world: ControllerWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    complete_first_generation(world)
    roll_out(world, "1.1.0")
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    world.reconcile()

    code, out, _ = fleetcd(capsys, "history", "stg-1", *remote(world, tmp_path), "-o", "json")
    assert code == 0
    history = json.loads(out)
    assert [(r["generation"], r["version"], r["status"]) for r in history["records"]] == [
        (2, "1.1.0", "deployed"),
        (1, "1.0.0", "deployed"),
    ]
    seqs = [e["seq"] for e in history["audit"]]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) >= 2
    assert {e["device"] for e in history["audit"]} == {"stg-1"}
    assert all(e["kind"] == "device_report" for e in history["audit"])

    code, table, _ = fleetcd(capsys, "history", "stg-1", *remote(world, tmp_path))
    assert "nav@1.1.0" in table and "queued→deployed" in table
    assert table.index("nav@1.1.0") < table.index("nav@1.0.0")
    assert (
        yaml.safe_load(fleetcd(capsys, "history", "stg-1", *remote(world, tmp_path), "-o", "yaml")[1])
        == history
    )


def test_history_finds_records_the_device_file_no_longer_keeps(
    world: ControllerWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world.reconcile()
    pass_wave(world, STAGING, "staging")
    repo = pygit2.Repository(str(world.server))
    current = json.loads(read_blob(repo, STATE_BRANCH, device_file("stg-1")) or b"")
    assert len(current["records"]) == 1
    current["records"] = []  # as if the controller had pruned it (device files keep the newest only)
    rewrite_state(world.server, {device_file("stg-1"): json.dumps(current).encode()})

    history = json.loads(fleetcd(capsys, "history", "stg-1", *remote(world, tmp_path), "-o", "json")[1])
    assert [(r["rollout"], r["status"]) for r in history["records"]] == [("nav", "deployed")]


def test_history_refuses_a_tampered_audit_log(
    world: ControllerWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world.reconcile()
    pass_wave(world, STAGING, "staging")
    repo = pygit2.Repository(str(world.server))
    (day,) = [p for p in state_of(world).audit]
    lines = (read_blob(repo, STATE_BRANCH, day) or b"").splitlines(keepends=True)
    rewrite_state(world.server, {day: b"".join(lines[:1] + lines[2:])})  # one line removed

    code, _, err = fleetcd(capsys, "history", "stg-1", *remote(world, tmp_path))
    assert code == 1
    assert day in err and "missing" in err


def test_receipt_is_shown_once_its_controller_signature_verifies(
    world: ControllerWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    complete_first_generation(world)
    code, out, err = fleetcd(capsys, "receipt", "nav", *remote(world, tmp_path))
    assert code == 0, err
    assert out.startswith("# Receipt: rollout `nav` generation 1")
    assert "alice" in out and "bob" in out
    assert "signature verified: receipts/nav/1.yaml" in err
    assert out.rstrip("\n") == state_of(world).files["receipts/nav/1.md"].decode().rstrip("\n")

    code, signed, _ = fleetcd(
        capsys, "receipt", "nav", "--generation", "1", *remote(world, tmp_path), "-o", "yaml"
    )
    assert yaml.safe_load(signed)["rollout"] == "nav"


@pytest.mark.parametrize(
    ("path", "edit", "code", "says"),
    [
        ("receipts/nav/1.yaml", lambda b: b.replace(b"alice", b"mallory"), 1, "does not verify"),
        ("receipts/nav/1.yaml.asc", lambda b: None, 1, "not on the state branch"),
        (
            "receipts/nav/1.md",
            lambda b: b.replace(b"alice", b"mallory"),
            0,
            "differs from the signed receipt",
        ),
    ],
    ids=["edited-yaml", "signature-removed", "edited-markdown-only"],
)
def test_a_receipt_edited_on_the_state_branch_is_caught(
    world: ControllerWorld,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    path: str,
    edit: Any,
    code: int,
    says: str,
) -> None:
    complete_first_generation(world)
    rewrite_state(world.server, {path: edit(state_of(world).files[path])})
    got, out, err = fleetcd(capsys, "receipt", "nav", *remote(world, tmp_path))
    assert (got, says in err) == (code, True), err
    assert "mallory" not in out  # never shows what the controller did not sign


def test_a_rollout_without_a_receipt_exits_1(
    world: ControllerWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world.reconcile()
    code, out, err = fleetcd(capsys, "receipt", "nav", *remote(world, tmp_path))
    assert (code, out) == (1, "")
    assert "no receipt for rollout 'nav'" in err


def test_history_of_an_unknown_robot_exits_1(
    world: ControllerWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world.reconcile()
    code, out, err = fleetcd(capsys, "history", "stg-9", *remote(world, tmp_path))
    assert (code, out) == (1, "")
    assert "no robot 'stg-9'" in err
