"""Withdrawing a release, through the real reconcile on real git and gpg.

The scenario fleet runs nav 1.0.0; nav 1.1.0 reaches staging (stg-1); then a commit adds
``withdrawals/nav/1.1.0.yaml``. From that commit on no signed bundle orders 1.1.0 to any robot, the
rollout stalls with ``release_withdrawn``, ``fleetcd get releases`` / ``get release`` and the status
pages say it is withdrawn and that stg-1 still runs it. A halt never rolls robots back to a
withdrawn release, and ``fleetcd deploy`` refuses to start a rollout of one.

A withdrawal is in force only with the approvals of the fleet's approvers (the strictest stage's
threshold, 2 here): an unapproved, stale or revoked-approver withdrawal stops nothing, and the
audit log says why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.state.model import RolloutPhase, WavePhase
from fleetcd.layout import withdrawal_path
from tests.clirun import fleetcd
from tests.gpgkeys import GpgKey, KeyFactory
from tests.sim.world import (
    CANARY,
    PRODUCTION,
    STAGING,
    WAVES,
    ControllerWorld,
    audit_lines,
    fail_the_canary,
    make_world,
    pass_all_waves,
    pass_wave,
    roll_out,
)

REASON = "map loader corrupts tokyo-floor3 maps (INC-4711)"


def withdraw(
    world: ControllerWorld,
    app: str,
    version: str,
    reason: str = REASON,
    *,
    approvers: list[GpgKey] | None = None,
) -> None:
    """Withdraw on the next merge; approved by every fleet approver unless ``approvers`` says who."""
    world.fleet.withdrawal(app, version, reason, approvers=approvers)


def _first_done(tmp_path: Path, keys: KeyFactory) -> ControllerWorld:
    world = make_world(tmp_path, keys, name="withdraw")
    world.reconcile()
    pass_all_waves(world)
    world.reconcile()
    return world


def _versions(world: ControllerWorld, device: str) -> list[str]:
    return [d.version for d in world.sim.bundle(device, world.clock.now).deployments]


def test_withdrawn_release_reaches_no_further_robot_and_its_rollout_stalls(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = _first_done(tmp_path, keys)
    roll_out(world, "1.1.0")
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    world.reconcile()
    withdraw(world, "nav", "1.1.0")
    world.merge("withdraw nav 1.1.0")
    world.clock.tick(120)  # staging's soak is long over: without the withdrawal canary would start
    world.reconcile()
    world.clock.tick(3600)
    world.reconcile()

    state = world.state()
    rollout = state.rollouts["nav"]
    assert (rollout.phase, rollout.reason) == (RolloutPhase.STALLED, "release_withdrawn")
    assert next(w for w in rollout.waves if w.name == "canary").phase is WavePhase.PENDING
    for device in CANARY + PRODUCTION:
        assert _versions(world, device) == ["1.0.0"], f"{device} was ordered a withdrawn release"
    assert _versions(world, "stg-1") == ["1.1.0"], "what it runs is not taken away"
    stalled = [line["event"] for line in audit_lines(state) if line["event"]["kind"] == "stalled"]
    assert [e["reason"] for e in stalled] == ["release_withdrawn"]

    status = state.files["STATUS.md"].decode()
    assert "**Withdrawn: nav@1.1.0**" in status and "Still running it (1): `stg-1`" in status
    html = state.files["status.html"].decode()
    assert "Withdrawn releases" in html and "INC-4711" in html

    remote = ["--repo", str(world.server), "--cache", str(tmp_path / "ops-cache")]
    code, out, _ = fleetcd(capsys, "get", "releases", *remote, "-o", "json")
    assert code == 0
    rows = {(r["app"], r["version"]): r for r in json.loads(out)}
    assert rows[("nav", "1.1.0")]["withdrawn"] == {"path": "withdrawals/nav/1.1.0.yaml", "reason": REASON}
    assert rows[("nav", "1.1.0")]["running"] == ["stg-1"]
    assert rows[("nav", "1.0.0")]["withdrawn"] is None
    assert rows[("nav", "1.0.0")]["running"] == sorted(CANARY + PRODUCTION)
    table = fleetcd(capsys, "get", "releases", *remote)[1]
    assert f"yes: {REASON}" in table
    code, out, _ = fleetcd(capsys, "get", "release", "nav", "1.1.0", *remote)
    assert code == 0
    assert f"Withdrawn by withdrawals/nav/1.1.0.yaml: {REASON}" in out
    assert "rollout nav generation 2: stalled (release_withdrawn)" in out
    assert "Robots running nav 1.1.0:" in out and "stg-1" in out.split("Robots running", 1)[1]
    assert fleetcd(capsys, "get", "release", "nav", "9.9.9", *remote)[0] == 1


def test_lifting_a_withdrawal_lets_the_rollout_go_on(tmp_path: Path, keys: KeyFactory) -> None:
    world = _first_done(tmp_path, keys)
    withdraw(world, "nav", "1.1.0")
    roll_out(world, "1.1.0")  # published and withdrawn in one merge: nobody ever gets it
    assert world.state().rollouts["nav"].phase is RolloutPhase.STALLED
    assert _versions(world, "stg-1") == ["1.0.0"]
    world.fleet.remove(withdrawal_path("nav", "1.1.0"))
    world.merge("nav 1.1.0 is fine after all")
    world.reconcile()
    assert world.state().rollouts["nav"].phase is RolloutPhase.PROGRESSING
    assert _versions(world, "stg-1") == ["1.1.0"]


def test_a_halt_never_rolls_robots_back_to_a_withdrawn_release(tmp_path: Path, keys: KeyFactory) -> None:
    world = _first_done(tmp_path, keys)
    roll_out(world, "1.1.0")
    withdraw(world, "nav", "1.0.0", "leaks the site's Wi-Fi credentials into its logs")
    world.merge("withdraw nav 1.0.0")
    world.reconcile()
    pass_wave(world, STAGING, "staging")
    fail_the_canary(world)
    state = world.state()
    assert state.rollouts["nav"].phase is RolloutPhase.HALTED
    assert state.rollouts["nav"].rolled_back_devices == ()
    for device in ("stg-1", "can-2", "can-3"):
        assert "rollback" not in [d.action for d in world.sim.bundle(device, world.clock.now).deployments]
    halted = next(line["event"] for line in audit_lines(state) if line["event"]["kind"] == "rollout_halted")
    assert halted["data"]["rollback"] == "previous_release_withdrawn"


def test_deploy_refuses_to_start_a_rollout_of_a_withdrawn_release(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = make_world(tmp_path, keys, name="withdraw")
    world.fleet.release("nav", "1.1.0")
    withdraw(world, "nav", "1.1.0")
    world.merge("nav 1.1.0, withdrawn")
    head = world.fleet.git("rev-parse", "HEAD")
    code, _, err = fleetcd(
        capsys,
        "deploy",
        "nav@1.1.0",
        "--to",
        "stg-1",
        "--idempotency-key",
        "ci-42",
        "--repo",
        str(world.fleet.root),
        "--no-commit",
    )
    assert code != 0
    assert "release_withdrawn" in err or "withdrawn" in err
    assert world.fleet.git("rev-parse", "HEAD") == head
    assert not any(p.name.startswith("nav-ci-42") for p in (world.fleet.root / "rollouts").iterdir())


def test_fleetcd_withdraw_commits_the_file_and_the_controller_stalls_the_rollout(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = _first_done(tmp_path, keys)
    world.fleet.release("nav", "1.1.0")
    world.fleet.rollout(
        "nav",
        app="nav",
        release="1.1.0",
        cohorts=["staging", "canary"],
        strategy={"type": "waves", "waves": WAVES[:2]},
    )
    world.fleet.commit("nav 1.1.0 (not merged yet)")
    author = ["--author", "Ops Person <ops@fleet.test>"]
    repo = ["--repo", str(world.fleet.root)]
    code, out, err = fleetcd(capsys, "withdraw", "nav@1.1.0", "--reason", "bricks\nthe lidar", *repo, *author)
    assert code == 0, err
    assert "Withdraw nav 1.1.0" in out and "stall (release_withdrawn): nav." in " ".join(out.split())
    assert "once 2 approvers have signed it" in " ".join(out.split())
    assert "APPROVALS NEEDED: 0 of 2" in err and "fleetcd approve withdrawals/nav/1.1.0.yaml" in err
    text = (world.fleet.root / "withdrawals/nav/1.1.0.yaml").read_text()
    assert 'reason: "bricks the lidar"' in text, "one line, quoted"
    assert world.fleet.git("status", "--porcelain") == ""
    again = fleetcd(capsys, "withdraw", "nav@1.1.0", "--reason", "again", *repo, *author)
    assert again[0] == 0 and "nothing to do" in again[1]
    code, _, err = fleetcd(capsys, "withdraw", "nav@7.0.0", "--reason", "typo", *repo, *author)
    assert code != 0 and "withdrawals/nav/7.0.0.yaml" in err and "does not exist" in err
    world.fleet.git("push", "-q", str(world.server), "main")
    world.reconcile()
    assert world.state().rollouts["nav"].phase is RolloutPhase.PROGRESSING, "not approved yet"
    assert _versions(world, "stg-1") == ["1.1.0"]
    path = str(world.fleet.root / "withdrawals/nav/1.1.0.yaml")
    code, out, err = fleetcd(capsys, "approve", path, "--all-approvers", "--gnupghome", str(keys.home), *repo)
    assert code == 0, err
    assert sorted(out.split()) == sorted(
        ["approved:", "approved:"]
        + [f"withdrawals/nav/1.1.0.yaml.d/{keys.key(n).fingerprint}.asc" for n in ("alice", "bob")]
    )
    world.fleet.git("add", "-A")
    world.fleet.git("commit", "-q", "-m", "Approve withdrawing nav 1.1.0")
    world.fleet.git("push", "-q", str(world.server), "main")
    world.reconcile()
    assert world.state().rollouts["nav"].phase is RolloutPhase.STALLED


def _ignored(world: ControllerWorld) -> list[dict[str, Any]]:
    return [
        line["event"] for line in audit_lines(world.state()) if line["event"]["kind"] == "withdrawal_ignored"
    ]


def _staging_done_then_withdraw(world: ControllerWorld, **withdrawal: Any) -> None:
    """1.1.0 deployed on staging; then a merge withdraws it; then staging's soak ends."""
    roll_out(world, "1.1.0")
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    world.reconcile()
    withdraw(world, "nav", "1.1.0", **withdrawal)
    world.merge("withdraw nav 1.1.0")
    world.clock.tick(120)
    world.reconcile()


def test_unapproved_withdrawal_does_not_stop_the_release(tmp_path: Path, keys: KeyFactory) -> None:
    world = _first_done(tmp_path, keys)
    _staging_done_then_withdraw(world, approvers=[])
    world.clock.tick(10)
    world.reconcile()  # the same main again: logged once
    state = world.state()
    assert state.rollouts["nav"].phase is RolloutPhase.PROGRESSING
    assert world.wave("canary") is not WavePhase.PENDING, "canary started as if nothing was withdrawn"
    for device in CANARY:
        assert "1.1.0" in _versions(world, device)
    (ignored,) = _ignored(world)
    assert (ignored["reason"], ignored["data"]["path"]) == ("approval_missing", "withdrawals/nav/1.1.0.yaml")
    assert "0 of 2 required approvals" in ignored["data"]["message"]
    assert "Withdrawn" not in state.files["STATUS.md"].decode()


def test_approved_withdrawal_stops_new_deployments(tmp_path: Path, keys: KeyFactory) -> None:
    world = _first_done(tmp_path, keys)
    _staging_done_then_withdraw(world, approvers=[keys.key("alice")])  # 1 of 2: not yet
    assert world.state().rollouts["nav"].phase is RolloutPhase.PROGRESSING
    world.fleet.approve_withdrawal(withdrawal_path("nav", "1.1.0"), keys.key("bob"))
    world.fleet.approvers_of[withdrawal_path("nav", "1.1.0")] = world.fleet.approver_keys
    world.merge("bob approves withdrawing nav 1.1.0")
    world.reconcile()
    state = world.state()
    assert (state.rollouts["nav"].phase, state.rollouts["nav"].reason) == (
        RolloutPhase.STALLED,
        "release_withdrawn",
    )
    dispatched = [d for d in CANARY + PRODUCTION if "1.1.0" in _versions(world, d)]
    world.clock.tick(3600)
    world.reconcile()
    assert [d for d in CANARY + PRODUCTION if "1.1.0" in _versions(world, d)] == dispatched
    assert [d for d in PRODUCTION if "1.1.0" in _versions(world, d)] == [], "no new wave after approval"
    assert [e["reason"] for e in _ignored(world)] == ["approval_missing"], (
        "only the commit short of approvals"
    )


def test_withdrawal_edited_after_approval_is_stale(tmp_path: Path, keys: KeyFactory) -> None:
    world = _first_done(tmp_path, keys)
    withdraw(world, "nav", "1.0.0", "leaks the site's Wi-Fi credentials into its logs")
    world.merge("withdraw nav 1.0.0")
    world.reconcile()
    path = withdrawal_path("nav", "1.0.0")
    world.fleet.approvers_of[path] = []  # the approvals on disk stay as they are, over the old text
    world.fleet.docs[path]["reason"] = "harmless after all"
    world.merge("soften the withdrawal of nav 1.0.0")
    world.reconcile()
    (ignored,) = _ignored(world)
    assert (ignored["reason"], ignored["data"]["path"]) == ("approval_stale", path)
    # Not in force: a halt of the next rollout rolls robots back to 1.0.0 again.
    roll_out(world, "1.1.0")
    pass_wave(world, STAGING, "staging")
    fail_the_canary(world)
    state = world.state()
    assert state.rollouts["nav"].phase is RolloutPhase.ROLLING_BACK
    assert "stg-1" in state.rollouts["nav"].rolled_back_devices
    assert "rollback" in [d.action for d in world.sim.bundle("stg-1", world.clock.now).deployments]


def test_withdrawal_approved_by_a_revoked_approver_is_refused(tmp_path: Path, keys: KeyFactory) -> None:
    world = _first_done(tmp_path, keys)
    carol = world.fleet.add_key_file(keys.key("carol")) or keys.key("carol")
    world.fleet.approver_keys.append(carol)  # rollouts are approved by alice, bob and carol
    world.fleet.rotate(approvers=world.fleet.key_refs(keys.key("alice"), carol))  # bob leaked
    world.merge("Trust root version 2: revoke bob")
    world.reconcile()
    assert world.state().meta.trust_version == 2
    _staging_done_then_withdraw(world, approvers=[keys.key("alice"), keys.key("bob")])
    state = world.state()
    assert state.rollouts["nav"].phase is RolloutPhase.PROGRESSING, "bob's approval no longer counts"
    for device in CANARY:
        assert "1.1.0" in _versions(world, device)
    (ignored,) = _ignored(world)
    assert ignored["reason"] == "approval_missing"
    assert "1 of 2 required approvals verified (alice)" in ignored["data"]["message"]
