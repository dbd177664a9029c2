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
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.executors.supervisor import Supervisor
from agent.executors.tarball import RUN_DIR
from controller.cli import build
from controller.records.model import Action
from controller.state.model import RolloutPhase, WavePhase
from fleetcd.cli.main import run
from fleetcd.vocabulary import Activity
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
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


def test_both_apps_show_in_get_devices_and_on_the_status_pages(
    two: MultiAppWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy_both(two)

    code = run(
        build(),
        [
            "get",
            "devices",
            "--repo",
            str(two.controller.server),
            "--cache",
            str(tmp_path / "c"),
            "-o",
            "json",
        ],
    )

    out = capsys.readouterr().out
    assert code == 0, out
    (row,) = [r for r in json.loads(out) if r["id"] == ROBOT]
    assert {app: info["current"] for app, info in row["apps"].items()} == {
        "navstack": "1.0.0",
        "perception": "2.0.0",
    }
    code = run(
        build(), ["get", "devices", "--repo", str(two.controller.server), "--cache", str(tmp_path / "c")]
    )
    table = capsys.readouterr().out
    (line,) = [x for x in table.splitlines() if x.startswith(ROBOT)]
    assert "navstack 1.0.0" in line and "perception 2.0.0" in line, table
    files = two.controller.state().files
    for page in ("STATUS.md", "status.html"):
        text = files[page].decode()
        assert "navstack" in text and "perception" in text and ROBOT in text, page


def test_each_apps_agent_state_lives_in_its_own_files(two: MultiAppWorld) -> None:
    deploy_both(two)

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
