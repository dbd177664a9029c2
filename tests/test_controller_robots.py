"""Robots that misbehave, at the reconcile level (real git status refs, real gpg): offline robots
told apart from failing ones, silent robots timing out so nothing hangs, and a robot's report
claiming another robot's deployment.

Defaults of the scenario's fleet: a robot is offline 900 s after its last report, and has 3600 s
from dispatch to finish its deployment.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from controller.records.model import Connectivity
from controller.state.model import RolloutPhase, WaveCounts, WavePhase
from fleetcd.reports import DeploymentReport
from tests.gpgkeys import KeyFactory
from tests.sim.robots import SimRobot
from tests.sim.world import (
    CANARY,
    PRODUCTION,
    STAGING,
    WAVES,
    ControllerWorld,
    assert_no_duplicates,
    audit_lines,
    make_world,
    pass_wave,
)

OFFLINE_AFTER_S, DEVICE_TIMEOUT_S = 900, 3600


def status_row(world: ControllerWorld, device: str) -> str:
    """The robot's row in STATUS.md on the state branch."""
    page = world.state().files["STATUS.md"].decode()
    (row,) = [line for line in page.splitlines() if line.startswith(f"| `{device}` |")]
    return row


def canary_counts(world: ControllerWorld) -> tuple[WavePhase, WaveCounts]:
    (wave,) = [w for w in world.state().rollouts["nav"].waves if w.name == "canary"]
    return wave.phase, wave.counts


def test_an_offline_robot_is_offline_until_its_deadline_then_failed_timed_out(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    pass_wave(world, STAGING, "staging")  # canary dispatched now, deadline in DEVICE_TIMEOUT_S
    dispatched = world.clock.now
    world.report_all(["can-1", "can-2"], "downloading")
    world.report_all(["can-3"], "deployed")
    world.clock.tick(10)
    world.reconcile()
    assert world.state().devices["can-2"].state.connectivity is Connectivity.ONLINE

    # can-1 keeps reporting; can-2 goes quiet past offline_after_seconds. The last reconcile sees
    # no new commit and no new report: only the clock says can-2 is offline now.
    world.clock.tick(OFFLINE_AFTER_S / 2)
    world.report_all(["can-1"], "downloading")
    world.reconcile()
    world.clock.tick(OFFLINE_AFTER_S / 2 + 60)
    world.reconcile()
    phase, counts = canary_counts(world)
    assert phase is WavePhase.RUNNING  # count 0 threshold: one failure would have failed it
    assert (counts.offline, counts.in_progress, counts.succeeded) == (1, 1, 1)
    assert counts.failed + counts.timed_out == 0
    assert world.state().rollouts["nav"].phase is RolloutPhase.PROGRESSING
    assert world.state().devices["can-2"].state.connectivity is Connectivity.OFFLINE
    assert "offline (last: downloading" in status_row(world, "can-2")
    assert world.state().devices["can-1"].state.connectivity is Connectivity.ONLINE

    # Past its deadline the silent robot has failed (timed out), and the gate counts it so.
    world.report_all(["can-1"], "deployed")
    world.clock.now = dispatched + timedelta(seconds=DEVICE_TIMEOUT_S + 1)
    world.reconcile()
    phase, counts = canary_counts(world)
    assert (counts.timed_out, counts.offline, counts.succeeded) == (1, 0, 2)
    assert phase is WavePhase.FAILED
    assert world.state().rollouts["nav"].phase is RolloutPhase.HALTED
    assert "failed (timed out)" in status_row(world, "can-2")
    (record,) = world.state().devices["can-2"].records
    assert record.reason == "timed_out"
    assert_no_duplicates(world.state())


def test_a_robot_that_never_reports_times_out_and_the_rollout_completes(
    tmp_path: Path, keys: KeyFactory
) -> None:
    waves = [*WAVES[:2], {**WAVES[2], "failure_threshold": {"count": 1}}]
    world = make_world(tmp_path, keys, waves=waves)
    world.reconcile()
    pass_wave(world, STAGING, "staging")
    pass_wave(world, CANARY, "canary")  # production dispatched now
    world.report_all(PRODUCTION[:-1], "deployed")
    world.clock.tick(10)
    world.reconcile()
    assert world.wave("production") is WavePhase.RUNNING  # 3 of 4 reported: the gate waits

    world.clock.tick(DEVICE_TIMEOUT_S)
    world.reconcile()  # prod-4 timed out: 4 of 4 reported, 1 failure is within the threshold
    assert world.wave("production") is WavePhase.SOAKING
    world.clock.tick(61)
    world.reconcile()
    world.reconcile()
    state = world.state()
    assert state.rollouts["nav"].phase is RolloutPhase.COMPLETED
    (record,) = state.devices[PRODUCTION[-1]].records
    assert (record.reason, record.status.value) == ("timed_out", "failed")
    assert state.devices[PRODUCTION[-1]].state.connectivity is Connectivity.UNKNOWN  # never heard of
    assert "receipts/nav/1.yaml" in state.files
    assert_no_duplicates(state)


def test_a_report_claiming_another_robots_deployment_is_rejected_and_audited(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    (victim,) = world.sim.bundle("stg-1", world.clock.now).deployments
    before = world.state().devices["stg-1"]

    # can-1 has no deployment yet; it reports stg-1's as failed, through its own status ref.
    attacker = world.sim.robots.setdefault("can-1", SimRobot("can-1"))
    attacker.reports["nav"] = DeploymentReport(
        deployment_id=victim.deployment_id,
        app="nav",
        version=victim.version,
        activity="failed",
        error="failed",
        message="it broke",
        updated_at=world.clock.now,
    )
    world.sim.push_report("can-1", world.clock.now)
    world.clock.tick(10)
    world.reconcile()

    state = world.state()
    assert state.devices["stg-1"].records == before.records
    assert world.wave("staging") is WavePhase.RUNNING
    reports = [e for e in (line["event"] for line in audit_lines(state)) if e["kind"] == "device_report"]
    (event,) = [e for e in reports if e["device"] == "can-1" and e["reason"] is not None]
    assert event["reason"] == "foreign_deployment"
    assert event["data"]["owner"] == "stg-1" and event["data"]["deployment_id"] == victim.deployment_id
    assert state.devices["can-1"].records == ()

    # The owner's own report still counts.
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    world.reconcile()
    assert world.wave("staging") is WavePhase.SOAKING
    assert_no_duplicates(world.state())
