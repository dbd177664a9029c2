"""Several apps on one robot, end to end (tests/sim/multiapp.py): navstack and perception, each with
its own release, rollout, waves, config and health, through the real controller's reconcile and the
real agent (tarball executor, real app processes, real git, gpg and HTTP).

Each app converges on its own; a failing release of one app is rolled back on the robot, halts its
own rollout and never touches the other app (its process, journal, config or records); both apps
show in the robot's report, ``fleetcd get devices`` and the status pages; and the agent keeps each
app's state in its own files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agent.converge.context import ConvergeContext
from agent.converge.requires import converge_order, enforce_requirements, unmet
from agent.errors import GateClosed, GateTimedOut
from agent.executors.supervisor import Supervisor
from agent.executors.tarball import RUN_DIR
from agent.health.clock import SYSTEM_CLOCK
from agent.hooks import load_hooks
from agent.state.journal import JournalEntry
from agent.sync.accept import load_desired
from controller.cli import build
from controller.records.model import Action
from controller.state.model import RolloutPhase, WavePhase
from fleetcd.cli.main import run
from fleetcd.loading.fleetspec import load_spec
from fleetcd.planning.plan import Plan, build_plan
from fleetcd.planning.render import REQUIREMENT_WAITS, render_markdown, render_text
from fleetcd.vocabulary import Activity
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer, Behaviour
from tests.sim.multiapp import OTHER, ROBOT, SOAK_SECONDS, MultiAppWorld, config_values


@pytest.fixture
def two(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[MultiAppWorld]:
    built = MultiAppWorld.create(tmp_path, keys, artifacts)
    yield built
    built.close()


def deploy_both(world: MultiAppWorld) -> None:
    """navstack 1.0.0 and perception 2.0.0 through both waves of their rollouts (asserted)."""
    world.publish("navstack", "1.0.0", rate_hz=20)
    world.publish("perception", "2.0.0", rate_hz=5)
    result = world.once()
    assert result.error is None, result.errors
    world.reconcile()  # ingests robot-1's report: staging soaks
    world.reconcile(SOAK_SECONDS + 1)  # staging passed: canary dispatched to robot-2
    for app in ("navstack", "perception"):
        world.other_reports(app, "deployed")
    world.reconcile()
    world.reconcile(SOAK_SECONDS + 1)
    assert world.rollout("navstack").phase is RolloutPhase.COMPLETED
    assert world.rollout("perception").phase is RolloutPhase.COMPLETED


def test_two_apps_with_their_own_rollouts_converge_on_one_robot_each_with_its_own_config(
    two: MultiAppWorld,
) -> None:
    two.publish("navstack", "1.0.0", rate_hz=20)

    first = two.once()

    assert first.error is None, first.errors
    assert set(first.apps) == {"navstack"}  # perception has no rollout yet: nothing of it on the robot
    assert two.answer("navstack") == "1.0.0"
    two.publish("perception", "2.0.0", rate_hz=5)

    second = two.once()

    assert second.error is None, second.errors
    assert two.answer("perception") == "2.0.0" and two.answer("navstack") == "1.0.0"
    assert second.apps["navstack"].entry == first.apps["navstack"].entry  # untouched by perception
    assert config_values(two.config_file("navstack")) == {"rate_hz": 20}
    assert config_values(two.config_file("perception")) == {"rate_hz": 5}
    assert second.report is not None
    assert sorted((a.app, a.current) for a in second.report.apps) == [
        ("navstack", "1.0.0"),
        ("perception", "2.0.0"),
    ]
    # Each rollout runs its own waves: staging passed on robot-1 alone, canary waits for robot-2.
    two.reconcile()
    two.reconcile(SOAK_SECONDS + 1)
    for app in ("navstack", "perception"):
        assert [(w.name, w.phase) for w in two.rollout(app).waves] == [
            ("staging", WavePhase.PASSED),
            ("canary", WavePhase.RUNNING),
        ], app
    two.other_reports("perception", "deployed")
    two.reconcile()
    two.reconcile(SOAK_SECONDS + 1)
    assert two.rollout("perception").phase is RolloutPhase.COMPLETED
    assert two.rollout("navstack").waves[1].phase is WavePhase.RUNNING  # robot-2 has not said a word
    assert {r.app: r.activity for r in two.controller.state().devices[ROBOT].records} == {
        "navstack": Activity.DEPLOYED,
        "perception": Activity.DEPLOYED,
    }


def test_a_failing_release_of_one_app_is_rolled_back_without_touching_the_other(two: MultiAppWorld) -> None:
    deploy_both(two)
    perception = two.entry("perception")
    pidfile = Supervisor(two.paths.apps_dir / RUN_DIR).pidfile("perception")
    process = pidfile.read_bytes()  # pid, start time, version, environment digest
    perception_records = two.records("perception") + two.records("perception", OTHER)
    journal_before = two.paths.journal("perception").read_bytes()
    config_before = two.config_file("perception").read_bytes()
    two.publish("navstack", "1.1.0", "unhealthy", rate_hz=30)

    result = two.once()

    navstack = two.entry("navstack")
    assert navstack is not None and (navstack.state, navstack.version) == (Activity.ROLLED_BACK, "1.1.0")
    assert two.answer("navstack") == "1.0.0"
    assert config_values(two.config_file("navstack")) == {"rate_hz": 20}  # its old config is back
    assert set(result.apps) == {"navstack", "perception"}
    assert two.entry("perception") == perception
    assert two.paths.journal("perception").read_bytes() == journal_before
    assert two.config_file("perception").read_bytes() == config_before
    assert pidfile.read_bytes() == process  # the same process, never restarted
    assert two.answer("perception") == "2.0.0"
    two.reconcile()
    halted = two.rollout("navstack")
    assert halted.phase is RolloutPhase.HALTED, halted
    assert [w.phase for w in halted.waves] == [WavePhase.FAILED, WavePhase.PENDING]
    assert "navstack" in two.desired_versions(ROBOT) and two.desired_versions(OTHER)["navstack"] == "1.0.0"
    assert two.rollout("perception").phase is RolloutPhase.COMPLETED
    assert two.records("perception") + two.records("perception", OTHER) == perception_records
    assert not [r for r in two.records("perception") if r.action is Action.ROLLBACK]


def test_both_apps_show_in_get_devices_and_the_status_pages_and_keep_their_own_agent_state(
    two: MultiAppWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy_both(two)

    remote = ["--repo", str(two.controller.server), "--cache", str(tmp_path / "c")]

    code = run(build(), ["get", "devices", *remote, "-o", "json"])

    out = capsys.readouterr().out
    assert code == 0, out
    (row,) = [r for r in json.loads(out) if r["id"] == ROBOT]
    assert {app: info["current"] for app, info in row["apps"].items()} == {
        "navstack": "1.0.0",
        "perception": "2.0.0",
    }
    assert run(build(), ["get", "devices", *remote]) == 0
    table = capsys.readouterr().out
    (line,) = [x for x in table.splitlines() if x.startswith(ROBOT)]
    assert "navstack 1.0.0" in line and "perception 2.0.0" in line, table
    files = two.controller.state().files
    for page in ("STATUS.md", "status.html"):
        text = files[page].decode()
        assert "navstack" in text and "perception" in text and ROBOT in text, page
    # On the robot: one journal, one slot tree and one current version per app.
    paths = two.paths
    assert paths.journaled_apps() == ["navstack", "perception"]
    executor = two.executor()
    assert (executor.active("navstack"), executor.active("perception")) == ("1.0.0", "2.0.0")
    for app, version in (("navstack", "1.0.0"), ("perception", "2.0.0")):
        entry = two.entry(app)
        assert entry is not None and (entry.version, entry.state) == (version, Activity.HEALTHY)
        assert (paths.apps_dir / app / "current").resolve() == (paths.apps_dir / app / "releases" / version)
        assert sorted(p.name for p in (paths.apps_dir / app / "releases").iterdir()) == [version]
    assert not (paths.apps_dir / "navstack" / "releases" / "2.0.0").exists()


# --- requires: one app's release needs another app on the same robot --------------------------------

NEEDS_NAVSTACK_1_2 = [{"app": "navstack", "version": ">=1.2.0"}]


def test_a_release_requiring_another_app_waits_until_that_app_runs_there_then_follows_it(
    two: MultiAppWorld,
) -> None:
    two.publish("navstack", "1.1.0")
    assert two.once().error is None
    two.reconcile()
    two.release("navstack", "1.2.0")  # published, not rolled out yet
    two.publish("perception", "2.0.0", requires=NEEDS_NAVSTACK_1_2)

    waiting = two.rollout("perception").waves[0]
    assert (waiting.phase, waiting.reason) == (WavePhase.WAITING, "requirement_unmet")
    assert '<p class="reason">requirement_unmet</p>' in two.controller.state().files["status.html"].decode()
    assert "perception" not in two.desired_versions(ROBOT)
    assert not two.records("perception")
    assert "perception" not in two.once().apps
    two.publish("navstack", "1.2.0")
    assert two.once().error is None  # navstack 1.2.0 runs; the controller has not heard yet
    assert "perception" not in two.desired_versions(ROBOT)

    two.reconcile()  # ingests navstack 1.2.0 deployed: perception is dispatched in the same reconcile

    assert two.desired_versions(ROBOT) == {"navstack": "1.2.0", "perception": "2.0.0"}
    result = two.once()
    assert result.error is None, result.errors
    assert two.answer("perception") == "2.0.0" and two.answer("navstack") == "1.2.0"
    two.reconcile()
    assert [(r.version, r.activity) for r in two.records("perception")] == [("2.0.0", Activity.DEPLOYED)]


def test_a_downgrade_below_what_a_running_app_requires_is_held_not_dispatched(two: MultiAppWorld) -> None:
    two.publish("navstack", "1.2.0")
    two.once()
    two.reconcile()
    two.publish("perception", "2.0.0", requires=NEEDS_NAVSTACK_1_2)
    two.once()
    two.reconcile()
    two.release("navstack", "1.1.0")

    two.publish("navstack", "1.1.0")  # the rollout set back below perception's bound

    held = two.rollout("navstack").waves[0]
    assert (held.phase, held.reason) == (WavePhase.WAITING, "required_by_running_app")
    assert two.desired_versions(ROBOT)["navstack"] == "1.2.0"
    assert [r.version for r in two.records("navstack")] == ["1.2.0"]
    two.once()
    assert two.answer("navstack") == "1.2.0" and two.answer("perception") == "2.0.0"


def test_the_robot_refuses_to_switch_an_app_whose_requirement_does_not_run_there(
    two: MultiAppWorld, artifacts: ArtifactServer
) -> None:
    """Controller and robot disagree: the controller recorded navstack 1.2.0 on robot-1, then the
    robot was reflashed and cannot download navstack. perception waits on the robot itself."""
    two.publish("navstack", "1.2.0")
    two.once()
    two.reconcile()
    two.publish("perception", "2.0.0", requires=NEEDS_NAVSTACK_1_2)
    two.once()
    two.reconcile()
    two.close()
    two.config = two.config.model_copy(update={"state_dir": str(two.root / "reflashed")})
    navstack = (two.root / "published" / "navstack-1.2.0.tar.gz").read_bytes()
    artifacts.add("/navstack-1.2.0.tar.gz", navstack, Behaviour(status=503))

    result = two.once()

    entry = two.entry("perception")
    assert entry is not None and entry.state is Activity.VERIFYING and entry.first_deferred_at is not None
    assert entry.reason is not None and "requires navstack >=1.2.0 (navstack does not run)" in entry.reason
    assert two.answer("perception", limit_s=0.5) is None  # never started
    assert result.report is not None
    (reported,) = [d for d in result.report.deployments if d.app == "perception"]
    assert (reported.activity, reported.error) == ("queued", "retrying")
    artifacts.add("/navstack-1.2.0.tar.gz", navstack)

    again = two.once()

    assert again.error is None, again.errors
    assert two.answer("navstack") == "1.2.0" and two.answer("perception") == "2.0.0"  # in one cycle


def test_a_plan_names_the_requirement_and_the_robots_no_rollout_satisfies(two: MultiAppWorld) -> None:
    two.release("navstack", "1.2.0")
    two.release("perception", "2.0.0", requires=NEEDS_NAVSTACK_1_2)
    two.fleet.rollout("perception", app="perception", release="2.0.0", cohorts=["staging", "canary"])
    two.fleet.write()

    plan = plan_of(two.fleet)

    (perception,) = [r for r in plan.rollouts if r.name == "perception"]
    assert perception.requires == ("navstack >=1.2.0",)
    assert perception.requirement_waits == (ROBOT, OTHER)
    text = render_text(plan)
    assert "requires navstack >=1.2.0 (each robot waits until it runs there)" in text
    assert f"{REQUIREMENT_WAITS}: {ROBOT}, {OTHER}" in text
    assert "| requires |" in render_markdown(plan)
    two.fleet.rollout("navstack", app="navstack", release="1.2.0", devices=[ROBOT])
    two.fleet.write()
    (perception,) = [r for r in plan_of(two.fleet).rollouts if r.name == "perception"]
    assert perception.requirement_waits == (OTHER,)


def plan_of(fleet: FleetRepoBuilder) -> Plan:
    spec, problems = load_spec(fleet.snapshot())
    assert not problems, problems
    return build_plan(spec)


def test_the_robot_refuses_to_switch_an_app_below_what_a_running_app_requires(two: MultiAppWorld) -> None:
    """The robot's own check, on its real state: perception 2.0.0 runs and needs navstack >=1.2.0,
    so navstack 1.1.0 may not be switched to, whatever a bundle says; 1.3.0 may."""
    two.publish("navstack", "1.2.0")
    two.once()
    two.reconcile()
    two.publish("perception", "2.0.0", requires=NEEDS_NAVSTACK_1_2)
    two.once()
    paths = two.paths
    desired = load_desired(two.config, paths, two.now)
    ctx = ConvergeContext(
        two.config, paths, two.executor(), load_hooks(two.config.hooks), SYSTEM_CLOCK, lambda: two.now,
        assignments=desired.assignments,
    )  # fmt: skip
    navstack = desired.assignments["navstack"]

    assert unmet(ctx, "navstack", navstack, "1.1.0") == (
        "perception 2.0.0 runs and requires navstack >=1.2.0"
    )
    assert unmet(ctx, "navstack", navstack, "1.3.0") is None
    down = JournalEntry(
        deployment_id="dep-" + "0" * 24, version="1.1.0", previous_version="1.2.0", state=Activity.VERIFYING,
        attempts=0, updated_at=two.now, action="deploy",
    )  # fmt: skip
    with pytest.raises(GateClosed, match=re.escape("perception 2.0.0 runs and requires navstack >=1.2.0")):
        enforce_requirements(ctx, "navstack", navstack, down)
    waited = timedelta(seconds=two.config.gates.max_deferral_seconds + 1)
    with pytest.raises(GateTimedOut):
        enforce_requirements(
            ctx, "navstack", navstack, down.model_copy(update={"first_deferred_at": two.now - waited})
        )
    enforce_requirements(
        ctx, "navstack", navstack, down.model_copy(update={"action": "rollback"})
    )  # never held
    assert unmet(ctx, "perception", desired.assignments["perception"], "2.0.0") is None
    Supervisor(paths.apps_dir / RUN_DIR).stop(
        "navstack"
    )  # navstack down: perception's requirement is not met
    assert unmet(ctx, "perception", desired.assignments["perception"], "2.0.0") == (
        "requires navstack >=1.2.0 (navstack does not run)"
    )


@pytest.mark.parametrize(
    ("requires", "order"),
    [
        ({}, ["navstack", "perception", "planner"]),
        ({"navstack": ["perception"]}, ["perception", "navstack", "planner"]),
        ({"navstack": ["planner"], "planner": ["perception"]}, ["perception", "planner", "navstack"]),
        ({"navstack": ["perception"], "perception": ["navstack"]}, ["planner", "navstack", "perception"]),
    ],
    ids=["independent", "one-requirement", "chain", "cycle-keeps-name-order"],
)
def test_the_agent_converges_required_apps_first(requires: dict[str, list[str]], order: list[str]) -> None:
    assert converge_order(["planner", "perception", "navstack"], requires) == order
