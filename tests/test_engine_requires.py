"""A release's ``requires`` in the pure engine (controller.engine.requires): a robot is dispatched
only when it runs what the release requires, a downgrade below what a running app requires is held,
and an automatic rollback is never held. Decision tables over tests/sim/engine.py."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import timedelta
from typing import Any

import pytest

from controller.engine import EngineInput
from controller.engine.requires import running_version
from controller.records import (
    Action,
    DeploymentRecord,
    DeviceState,
    TargetStatus,
    apply_report,
    new_deployment,
)
from controller.state.model import MAX_RECORDS_PER_DEVICE, DeviceFile, RolloutPhase, WavePhase
from fleetcd.models.requirement import Dependent, Requirement
from tests.sim.engine import T0, Sim, robots, rollout_doc

ALL = {"type": "all_at_once", "failure_threshold": {"count": 0}}
NEEDS_NAVSTACK = (Requirement(app="navstack", version=">=1.2.0"),)
PERCEPTION_NEEDS_1_1 = (Dependent("perception", "2.0.0", Requirement(app="navstack", version=">=1.1.0")),)


class RequiresSim(Sim):
    """The engine sim with the release's ``requires`` and its dependents passed in."""

    def __init__(self, doc: dict[str, Any], *, requires: Any = (), required_by: Any = (), **kw: Any) -> None:
        super().__init__(doc, **kw)
        self.requires, self.required_by = tuple(requires), tuple(required_by)

    def input(self, now: Any = None) -> EngineInput:
        return dataclasses.replace(super().input(now), requires=self.requires, required_by=self.required_by)

    def runs(self, dev: str, app: str, version: str, *, ok: bool = True) -> DeploymentRecord:
        """The robot's record of another app: deployed (``ok``) or rolled back."""
        sha = hashlib.sha256(f"{app} {version}".encode()).hexdigest()
        old = self.files.get(dev) or DeviceFile(state=DeviceState(device=dev))
        at = T0 - timedelta(hours=1) + timedelta(minutes=len(old.records))  # newer than the last
        record = new_deployment(
            rollout=app, generation=1, device=dev, app=app, version=version, release_sha256=sha, wave=0,
            action=Action.DEPLOY, target_status=TargetStatus.DEPLOYED, at=at, deadline_at=None,
        )  # fmt: skip
        steps = ("downloading", "applying", "watching", "deployed" if ok else "rolled_back")
        for step in steps:
            record = apply_report(record, step, "none" if ok or step != "rolled_back" else "failed", step, at)
        self.files[dev] = old.model_copy(update={"records": (*old.records, record)})
        return record


def perception_rollout(ids: list[str], strategy: dict[str, Any] = ALL) -> RequiresSim:
    doc = rollout_doc(ids, strategy, app="perception", release="2.0.0")
    return RequiresSim(doc, requires=NEEDS_NAVSTACK, previous=None)


def test_a_robot_without_the_required_app_in_range_is_held_with_the_reason() -> None:
    ids = robots(3)
    sim = perception_rollout(ids)
    sim.runs(ids[0], "navstack", "1.2.0")
    sim.runs(ids[1], "navstack", "1.1.0")  # too old; ids[2] runs no navstack at all

    sim.tick()

    assert sim.dispatched() == [ids[0]]
    assert (sim.wave(sim.rollout_state.waves[0].name).phase, sim.rollout_state.waves[0].reason) == (
        WavePhase.WAITING,
        "requirement_unmet",
    )


def test_a_held_robot_is_dispatched_on_the_first_tick_after_the_required_version_runs_there() -> None:
    ids = robots(2)
    sim = perception_rollout(ids)
    sim.runs(ids[0], "navstack", "1.2.0")
    sim.runs(ids[1], "navstack", "1.1.0")
    sim.tick()
    sim.runs(ids[1], "navstack", "1.3.0")

    sim.tick(timedelta(seconds=30))

    assert sim.dispatched() == ids
    sim.succeed(*ids)
    sim.tick(timedelta(seconds=30))
    assert sim.phase() is RolloutPhase.COMPLETED


def test_a_required_version_the_robot_rolled_back_from_does_not_count_as_running() -> None:
    ids = robots(1)
    sim = perception_rollout(ids)
    sim.runs(ids[0], "navstack", "1.1.0")
    sim.runs(ids[0], "navstack", "1.2.0", ok=False)  # tried, failed its watch, back on 1.1.0

    sim.tick()

    assert sim.dispatched() == []


@pytest.mark.parametrize(
    ("perception", "dispatched"),
    [("2.0.0", False), ("1.0.0", True), (None, True)],
    ids=["dependent-runs", "other-version-of-dependent", "no-dependent"],
)
def test_a_downgrade_below_a_running_apps_bound_is_held(perception: str | None, dispatched: bool) -> None:
    ids = robots(1)
    sim = RequiresSim(rollout_doc(ids, ALL, release="1.0.0"), required_by=PERCEPTION_NEEDS_1_1)
    if perception is not None:
        sim.runs(ids[0], "perception", perception)

    sim.tick()

    assert (sim.dispatched() == ids) is dispatched
    if not dispatched:
        assert sim.rollout_state.waves[0].reason == "required_by_running_app"


def test_an_automatic_rollback_below_a_running_apps_bound_is_not_held() -> None:
    ids = robots(2)
    sim = RequiresSim(rollout_doc(ids, ALL, release="1.1.0"), required_by=PERCEPTION_NEEDS_1_1)
    for dev in ids:
        sim.runs(dev, "perception", "2.0.0")
    sim.tick()
    assert sim.dispatched() == ids
    sim.succeed(ids[0])  # perception 2.0.0 and navstack 1.1.0 run on ids[0]
    sim.fail(ids[1])

    sim.tick(timedelta(seconds=30))

    assert sim.phase() in (RolloutPhase.ROLLING_BACK, RolloutPhase.HALTED)
    assert ids[0] in sim.rollbacks()  # back to 1.0.0 although perception 2.0.0 requires >=1.1.0


def test_a_blue_green_stage_is_not_held_but_its_switch_is() -> None:
    ids = robots(1)
    sim = perception_rollout(ids, {"type": "blue_green", "min_staged_percent": 100})
    sim.runs(ids[0], "navstack", "1.1.0")
    sim.tick()
    record = sim.record(ids[0])
    assert record is not None and record.action is Action.STAGE
    sim.report(ids[0], "downloading", "applying", "staged")

    sim.tick(timedelta(seconds=30))
    sim.tick(timedelta(seconds=30))

    record = sim.record(ids[0])
    assert record is not None and record.target_status is TargetStatus.STAGED
    assert any(w.reason == "requirement_unmet" for w in sim.rollout_state.waves)
    sim.runs(ids[0], "navstack", "1.2.0")
    sim.tick(timedelta(seconds=30))
    record = sim.record(ids[0])
    assert record is not None and record.target_status is TargetStatus.DEPLOYED


def test_the_record_cap_keeps_what_a_robot_runs_of_every_app() -> None:
    """navstack was deployed once, long ago; perception then had many deployments. The device file
    keeps its newest 20 records, but never drops navstack's: it is what the robot runs (get devices,
    bundles and ``requires`` all read it)."""
    sim = RequiresSim(rollout_doc(["amr-01"], ALL, app="perception", release="2.0.0"))
    navstack = sim.runs("amr-01", "navstack", "1.2.0")
    for minor in range(MAX_RECORDS_PER_DEVICE - 1):
        sim.runs("amr-01", "perception", f"1.{minor}.0")
    assert len(sim.files["amr-01"].records) == MAX_RECORDS_PER_DEVICE  # full: one more drops one

    sim.tick()

    records = sim.files["amr-01"].records
    assert len(records) == MAX_RECORDS_PER_DEVICE and navstack in records
    assert running_version(sim.input(), "amr-01", "navstack") == "1.2.0"
    assert sim.record("amr-01") in records  # the new deployment is never the one dropped
    assert "1.0.0" not in {r.version for r in records if r.app == "perception"}  # the oldest went
