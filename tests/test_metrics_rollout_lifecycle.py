"""The controller's rollout and wave gauges over a rollout's whole life, checked by promtool.

tests/test_metrics_controller.py follows a rollout to its halt. Here one goes all the way: each
wave's gauge moves running -> soaking -> passed as the robots report, the rollout ends
``completed`` with every robot counted ``succeeded`` in its wave; deleting the rollout (its file
and its approvals) from main leaves it counted ``removed`` — never still ``completed`` or
``progressing`` — while the robots keep the deployment they run. Real reconciles on real git and gpg,
counted the way ``controller run`` counts them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from controller.metrics.exposition import ControllerMetrics
from fleetcd.layout import rollout_path
from tests.gpgkeys import KeyFactory
from tests.promtext import Key, by_label, check_metrics, samples, value
from tests.sim.world import CANARY, PRODUCTION, STAGING, make_world
from tests.test_metrics_controller import observed

WAVES = (("staging", STAGING), ("canary", CANARY), ("production", PRODUCTION))


def phase_of(found: dict[Key, float], wave: str) -> str:
    (phase,) = [
        p for p, v in by_label(found, "fleetcd_wave_phase", "phase", rollout="nav", wave=wave).items() if v
    ]
    return phase


def rollout_phase(found: dict[Key, float]) -> str:
    phases = by_label(found, "fleetcd_rollout_phase", "phase", rollout="nav", app="nav")
    (phase,) = [p for p, v in phases.items() if v]
    return phase


def test_a_rollout_s_gauges_follow_it_to_completed_and_then_to_removed(
    tmp_path: Path, keys: KeyFactory, promtool: str
) -> None:
    world = make_world(tmp_path, keys, name="lifecycle")
    metrics = ControllerMetrics(world.settings.push_attempts)
    observed(world, metrics)
    found = samples(metrics.render().decode())
    assert [phase_of(found, wave) for wave, _robots in WAVES] == ["running", "pending", "pending"]

    seen: list[list[str]] = []
    for wave, robots in WAVES:
        world.report_all(robots, "deployed")
        world.clock.tick(10)
        observed(world, metrics)
        soaking = samples(metrics.render().decode())
        world.clock.tick(61)
        observed(world, metrics)
        passed = samples(metrics.render().decode())
        seen.append([phase_of(soaking, wave), phase_of(passed, wave)])
        robots_of = by_label(passed, "fleetcd_wave_robots", "state", rollout="nav", wave=wave)
        assert robots_of["succeeded"] == len(robots) and sum(robots_of.values()) == len(robots)
    assert seen == [["soaking", "passed"]] * len(WAVES)

    text = metrics.render().decode()
    check_metrics(promtool, text)
    done = samples(text)
    assert rollout_phase(done) == "completed"
    assert value(done, "fleetcd_rollouts", phase="completed") == 1
    assert value(done, "fleetcd_rollouts", phase="progressing") == 0

    world.fleet.remove(rollout_path("nav"))
    shutil.rmtree(world.fleet.root / "approvals" / "nav")  # an approval of no rollout is refused
    world.merge("nav's rollout done: removed")
    world.clock.tick(5)
    assert observed(world, metrics).stalled is None

    text = metrics.render().decode()
    check_metrics(promtool, text)
    gone = samples(text)
    assert rollout_phase(gone) == "removed"
    assert by_label(gone, "fleetcd_rollouts", "phase") == {
        **{p: 0 for p in by_label(gone, "fleetcd_rollouts", "phase")},
        "removed": 1,
    }
    every = len(STAGING + CANARY + PRODUCTION)
    assert (
        by_label(gone, "fleetcd_robot_deployments", "status", app="nav")["deployed"] == every
    )  # they keep it
