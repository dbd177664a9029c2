"""The agent end to end against a fleet repository written by the real controller (tests/sim/agent.py):
install a signed and approved release, roll back a failing one inside its watch window, fall back
from a crash-looping one, defer on a closed gate, refuse a bad artifact, ride out the network going
away, flag an expired bundle, report config drift — and the controller ingests every report."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from agent.converge.machine import ActionKind
from agent.executors.base import RunState
from agent.loop import run_once
from agent.trustcheck import load_trust_state
from controller.delivery.write import delivery_ref
from fleetcd.desired import BundleRejected
from fleetcd.errors import TransportError
from fleetcd.reasons import Reason
from fleetcd.reports import StatusReport
from fleetcd.vocabulary import Activity
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld


def deployed(world: AgentWorld, version: str = "1.0.0") -> str:
    """Publish ``version``, converge it, let the controller ingest it; the deployment id."""
    world.publish(version)
    result = world.once()
    assert result.error is None, result.errors
    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.HEALTHY, version)
    world.reconcile()
    return entry.deployment_id


def reported(result_report: StatusReport | None, deployment_id: str) -> tuple[str, str, str]:
    assert result_report is not None
    (dep,) = [d for d in result_report.deployments if d.deployment_id == deployment_id]
    return dep.activity, dep.error, dep.message


def test_robot_installs_a_signed_and_approved_release_the_controller_wrote(world: AgentWorld) -> None:
    world.publish("1.0.0")

    result = world.once()

    assert result.error is None, result.errors
    assert result.apps[APP].action is ActionKind.START
    assert world.answer() == "1.0.0"
    executor = world.executor()
    assert executor.active(APP) == "1.0.0"
    assert executor.state(APP, "1.0.0") is RunState.RUNNING
    dep = world.deployment_id()
    assert result.pushed and reported(result.report, dep)[:2] == ("deployed", "none")
    assert result.report is not None and [(a.app, a.current) for a in result.report.apps] == [(APP, "1.0.0")]
    world.reconcile()
    assert world.record(dep).activity.value == "deployed"


def test_a_deployed_release_is_not_run_again_and_the_report_is_not_pushed_again(world: AgentWorld) -> None:
    deployed(world)
    world.controller.clock.tick(10)

    again = world.once()

    assert again.apps[APP].action is ActionKind.NONE
    assert not again.pushed  # nothing new, and the heartbeat (60 s) is not due
    world.controller.clock.tick(61)
    assert world.once().pushed  # heartbeat


def test_a_failing_probe_rolls_back_inside_the_watch_window_and_is_reported_rolled_back(
    world: AgentWorld,
) -> None:
    deployed(world, "1.0.0")
    world.publish("1.1.0", "unhealthy")
    dep = world.deployment_id()

    result = world.once()

    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.ROLLED_BACK, "1.1.0")
    assert world.answer("1.0.0") == "1.0.0"
    assert world.executor().active(APP) == "1.0.0"
    activity, error, message = reported(result.report, dep)
    assert (activity, error) == ("rolled_back", "failed")
    assert "probe_failed" in message and "healthz" in message
    world.reconcile()
    assert world.record(dep).activity.value == "rolled_back"


def roll_rollout_back(world: AgentWorld, version: str) -> None:
    """What ``fleetcd rollback`` commits: the rollout pointed at an older release."""
    world.controller.fleet.rollout(
        APP, app=APP, release=version, devices=["robot-1"], strategy=world.strategy
    )
    world.controller.merge(f"roll {APP} back to {version}")
    world.reconcile()


def test_an_operator_rollback_is_a_normal_converge_of_the_older_version(world: AgentWorld) -> None:
    deployed(world, "1.0.0")
    deployed(world, "1.1.0")
    assert world.answer("1.1.0") == "1.1.0"
    roll_rollout_back(world, "1.0.0")
    dep = world.deployment_id()

    result = world.once()

    assert result.apps[APP].action is ActionKind.START
    assert reported(result.report, dep)[:2] == ("deployed", "none")
    assert world.answer("1.0.0") == "1.0.0"
    assert result.report is not None and [(a.current, a.previous) for a in result.report.apps] == [
        ("1.0.0", "1.1.0")
    ]


def test_rolling_back_to_the_version_the_robot_already_fell_back_to_is_adopted(world: AgentWorld) -> None:
    deployed(world, "1.0.0")
    world.publish("1.1.0", "unhealthy")
    world.once()
    world.reconcile()
    roll_rollout_back(world, "1.0.0")
    dep = world.deployment_id()

    result = world.once()

    assert result.apps[APP].action is ActionKind.ADOPT
    assert reported(result.report, dep)[:2] == ("deployed", "none")
    world.reconcile()
    assert world.record(dep).activity.value == "deployed"


def test_a_crash_looping_version_falls_back_to_the_working_one(world: AgentWorld) -> None:
    deployed(world, "1.0.0")
    world.publish("2.0.0", "crash")

    result = world.once()

    entry = world.entry()
    assert entry is not None and entry.state is Activity.ROLLED_BACK
    assert entry.reason is not None and "exited" in entry.reason
    assert world.answer("1.0.0") == "1.0.0"
    assert result.error is None  # a rolled-back deployment is a report, not an agent failure


def test_an_artifact_whose_digest_does_not_match_fails_and_the_old_version_keeps_running(
    world: AgentWorld,
) -> None:
    deployed(world, "1.0.0")
    world.publish("1.1.0", artifact={"sha256": "0" * 64})
    dep = world.deployment_id()

    result = world.once()

    entry = world.entry()
    assert entry is not None and entry.state is Activity.FAILED
    assert "sha256" in (entry.reason or "")
    activity, error, _message = reported(result.report, dep)
    assert (activity, error) == ("failed", "failed")
    assert world.answer() == "1.0.0"
    assert world.executor().active(APP) == "1.0.0"


def test_a_closed_gate_defers_the_install_then_it_goes_ahead_when_open(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    docked = tmp_path / "docked"
    gates = {"gates": {"checks": {"docked": {"file": str(docked)}}, "retry_seconds": 7}}
    world = AgentWorld.create(tmp_path / "w", keys, artifacts, agent=gates)
    try:
        world.publish("1.0.0", gates=["docked"])
        dep = world.deployment_id()

        waiting = world.once()

        assert waiting.apps[APP].deferred and waiting.retry_in_seconds == 7
        activity, error, message = reported(waiting.report, dep)
        assert (activity, error) == ("queued", "retrying")
        assert "docked" in message
        assert world.executor().active(APP) is None
        docked.touch()
        world.controller.clock.tick(7)

        result = world.once()

        assert reported(result.report, dep)[:2] == ("deployed", "none")
        assert world.answer() == "1.0.0"
        assert result.report is not None and waiting.report is not None
        events = [e.activity for e in result.report.deployments[0].events]
        assert events == ["downloading", "verifying", "queued", "applying", "watching", "deployed"]
        assert result.report.seq > waiting.report.seq
    finally:
        world.close()


def test_a_gate_closed_past_the_maximum_deferral_fails_the_deployment(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    gates = {"gates": {"checks": {"docked": {"file": str(tmp_path / "never")}}, "max_deferral_seconds": 60}}
    world = AgentWorld.create(tmp_path / "w", keys, artifacts, agent=gates)
    try:
        world.publish("1.0.0", rollout={"gates": ["docked"]})
        world.once()
        world.controller.clock.tick(61)

        result = world.once()

        entry = world.entry()
        assert entry is not None and entry.state is Activity.FAILED
        assert "max_deferral_seconds" in (entry.reason or "")
        assert reported(result.report, entry.deployment_id)[:2] == ("failed", "failed")
    finally:
        world.close()


def test_a_failing_preflight_step_fails_before_anything_is_installed(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    world = AgentWorld.create(tmp_path / "w", keys, artifacts, agent={"exec_allowlist": ["/bin/false"]})
    try:
        world.publish("1.0.0", preflight=[{"name": "battery", "exec": ["/bin/false"]}])

        world.once()

        entry = world.entry()
        assert entry is not None and entry.state is Activity.FAILED
        assert "preflight battery" in (entry.reason or "")
        assert world.executor().active(APP) is None
    finally:
        world.close()


def test_offline_the_robot_keeps_running_and_queues_its_report_until_the_server_is_back(
    world: AgentWorld,
) -> None:
    deployed(world, "1.0.0")
    with world.controller.server_down():
        world.controller.clock.tick(120)
        offline = world.once()

    assert offline.transient and isinstance(offline.error, TransportError)
    assert not offline.pushed
    assert world.answer() == "1.0.0"
    assert offline.report is not None and offline.report.last_error is not None
    assert world.paths.outbox.exists()

    back = world.once()

    assert back.pushed and not world.paths.outbox.exists()


def test_an_expired_bundle_is_flagged_stale_and_the_robot_keeps_running(world: AgentWorld) -> None:
    deployed(world, "1.0.0")
    world.controller.clock.tick(timedelta(days=400).total_seconds())

    result = world.once()

    assert result.stale and result.report is not None and result.report.stale
    assert world.answer() == "1.0.0"
    assert world.executor().active(APP) == "1.0.0"


def test_clock_one_year_ahead_for_one_cycle_does_not_leave_the_robot_stale(world: AgentWorld) -> None:
    deployed(world, "1.0.0")
    world.publish("1.1.0")  # a new root: the commit the robot verifies while its clock is wrong
    year_ahead = world.now + timedelta(days=365)

    ahead = run_once(world.config, year_ahead)

    assert ahead.stale and world.executor().active(APP) == "1.0.0"  # expired to that clock: no install
    trust = load_trust_state(world.paths.trust_file)
    assert trust.time_floor is not None and trust.time_floor <= world.now  # never the clock reading

    corrected = world.once()  # NTP put the clock right; the controller has signed nothing since

    assert not corrected.stale and corrected.error is None, corrected.errors
    assert world.answer("1.1.0") == "1.1.0"
    assert corrected.report is not None and not corrected.report.stale

    # The same again on the commit already accepted (no gpg: the unchanged-commit path).
    assert run_once(world.config, year_ahead).stale
    world.controller.clock.tick(10)
    again = world.once()
    assert not again.stale and again.error is None, again.errors
    assert load_trust_state(world.paths.trust_file).expired_seen is None


def test_config_values_are_written_where_the_app_reads_them_and_local_edits_reported_as_drift(
    world: AgentWorld,
) -> None:
    schema = {"type": "object", "properties": {"speed": {"type": "number"}}, "additionalProperties": False}
    world.controller.fleet.config(APP, "default", {"speed": 1.5})
    world.publish("1.0.0", config={"path": "web.yaml", "schema": schema})
    world.once()
    written = world.paths.apps_dir / APP / "config" / "web.yaml"
    assert written.read_text() == "speed: 1.5\n"
    assert world.executor().run_spec(APP, "1.0.0").env["FLEETCD_CONFIG"] == str(written)  # type: ignore[union-attr]

    written.write_text("speed: 9\n")
    result = world.once()

    assert result.report is not None and result.report.drift == [str(written)]
    assert result.report.deployments[0].activity == "drifted"
    world.reconcile()
    assert world.record(result.report.deployments[0].deployment_id).activity.value == "drifted"


def test_with_the_restore_policy_a_local_config_edit_is_put_back(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    world = AgentWorld.create(tmp_path / "w", keys, artifacts, agent={"config_drift": "restore"})
    schema = {"type": "object", "properties": {"speed": {"type": "number"}}, "additionalProperties": False}
    try:
        world.controller.fleet.config(APP, "default", {"speed": 1.5})
        world.publish("1.0.0", config={"path": "web.yaml", "schema": schema})
        world.once()
        written = world.paths.apps_dir / APP / "config" / "web.yaml"
        written.write_text("speed: 9\n")

        result = world.once()

        assert written.read_text() == "speed: 1.5\n"  # the written bytes are back
        assert result.report is not None and result.report.drift == []  # restored: nothing drifted
        assert result.report.deployments[0].activity == "deployed"
    finally:
        world.close()


def test_blue_green_stages_first_and_switches_when_the_controller_says_so(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    world = AgentWorld.create(tmp_path / "w", keys, artifacts)
    try:
        deployed(world, "1.0.0")
        world.strategy = {"type": "blue_green", "min_staged_percent": 100}
        world.publish("1.1.0")
        (stage,) = world.controller.sim.bundle("robot-1", world.now).deployments
        assert stage.action == "stage"

        staged = world.once()

        assert reported(staged.report, stage.deployment_id)[:2] == ("staged", "none")
        assert world.answer() == "1.0.0" and world.executor().active(APP) == "1.0.0"
        assert world.executor().state(APP, "1.1.0") is RunState.EXITED  # installed beside, not started
        world.reconcile()
        world.reconcile()
        (switch,) = world.controller.sim.bundle("robot-1", world.now).deployments
        assert (switch.deployment_id, switch.action) == (stage.deployment_id, "deploy")

        result = world.once()

        assert result.apps[APP].action is ActionKind.PROMOTE
        assert reported(result.report, stage.deployment_id)[:2] == ("deployed", "none")
        assert world.answer("1.1.0") == "1.1.0"
    finally:
        world.close()


def test_an_older_validly_signed_bundle_is_refused_and_the_robot_keeps_what_it_runs(
    world: AgentWorld,
) -> None:
    deployed(world, "1.0.0")
    ref = delivery_ref("robot-1", namespaces=True)
    old = world.controller.fleet.git("--git-dir", str(world.controller.server), "rev-parse", ref)
    deployed(world, "1.1.0")
    world.controller.fleet.git("--git-dir", str(world.controller.server), "update-ref", ref, old)

    result = world.once()

    assert isinstance(result.error, BundleRejected) and result.error.reason is Reason.SERIAL_ROLLBACK
    assert result.apps[APP].action is ActionKind.NONE  # the last accepted bundle still says 1.1.0
    assert world.answer() == "1.1.0"
    assert result.report is not None and "rollback attack" in (result.report.last_error or "")
    assert result.report.bundle_serial == 2


def test_a_report_health_hook_that_fails_rolls_the_new_version_back(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    hooks = {"hooks": {"report_health": {"exec": ["/bin/false"]}}}
    world = AgentWorld.create(tmp_path / "w", keys, artifacts, agent=hooks)
    try:
        world.publish("1.0.0")

        world.once()

        entry = world.entry()
        assert entry is not None and entry.state is Activity.ROLLED_BACK
        assert "report_health" in (entry.reason or "")
        assert world.executor().active(APP) is None  # a first install rolled back leaves nothing running
    finally:
        world.close()
