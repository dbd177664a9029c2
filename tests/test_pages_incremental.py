"""Status pages built from the last reconcile's memo: the same bytes as a full rebuild, for K robots' work.

A long-running controller keeps each robot's view and square (:mod:`controller.pages.memo`) and
rebuilds only robots whose inputs changed. These tests drive one memo through a sequence of
reconciles (reports, robots added and retired, a rollout starting, halting and finishing, the
config a robot should run changing, a device file parsed again from its bytes) and compare both
pages byte for byte with a build that has no memo; and they count the robots rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from controller.pages import build_view, render_status_html, render_status_md
from controller.pages.memo import PagesMemo
from controller.pages.summary import RobotState
from controller.records.model import Connectivity, DeviceState
from controller.records.transitions import apply_report
from controller.state.model import DeviceFile, RolloutPhase, WavePhase, WaveState
from fleetcd.models import Stage
from tests.test_pages import COMMIT, NOW, Fleet, device, mix, sample_fleet, unchanged_fleet

Pages = tuple[str, str]
# Both pages list the robots still running a withdrawn release (those that reported it deployed).
WITHDRAWN = {("nav", "2.4.0"): "leaks memory", ("nav", "2.3.1"): "superseded"}


class Config:
    """What ``config_of`` answers from: a new object is a new fleet context (main moved)."""

    def __init__(self, sha: str | None) -> None:
        self.sha = sha

    def of(self, app: str, device_id: str) -> str | None:
        return self.sha


def pages(fleet: Fleet, memo: PagesMemo | None, config: Config, minutes: int = 0) -> Pages:
    now = NOW + timedelta(minutes=minutes)
    view = build_view(
        fleet.rollouts, fleet.files, fleet.cohorts, fleet.devices, now, COMMIT,
        fleet="acme", config_of=config.of, memo=memo, config_source=config, withdrawals=WITHDRAWN,
    )  # fmt: skip
    return render_status_md(view), render_status_html(view, memo)


def report(fleet: Fleet, device_id: str, activity: str, error: str = "none", text: str = "") -> None:
    """The robot's newest record moved by one report, as ingest writes a new device file."""
    file = fleet.files[device_id]
    newest = apply_report(file.records[-1], activity, error, text, NOW)
    fleet.files[device_id] = file.model_copy(update={"records": (*file.records[:-1], newest)})


def reparsed(fleet: Fleet) -> None:
    """Every device file parsed again from its bytes: equal records, new objects (the state cache
    after a reconcile that wrote them all)."""
    for device_id, file in fleet.files.items():
        fleet.files[device_id] = DeviceFile.model_validate_json(file.model_dump_json())


def offline(fleet: Fleet, device_id: str) -> None:
    file = fleet.files[device_id]
    state = DeviceState(
        device=device_id, connectivity=Connectivity.OFFLINE, last_seen=NOW - timedelta(hours=5)
    )
    fleet.files[device_id] = file.model_copy(update={"state": state})


def retire(fleet: Fleet, device_id: str) -> None:
    fleet.devices[device_id] = fleet.devices[device_id].model_copy(update={"decommissioned": True})


def add_robot(fleet: Fleet) -> None:
    """A new robot joins the running production wave (a commit on main added it)."""
    rollout = fleet.rollouts[0]
    waves = list(rollout.waves)
    new_id = "production-99999"
    fleet.devices[new_id] = device(new_id, "lyon")
    waves[2] = waves[2].model_copy(update={"devices": (*waves[2].devices, new_id)})
    fleet.rollouts[0] = rollout.model_copy(update={"waves": tuple(waves)})


def start_rollout(fleet: Fleet) -> None:
    fleet.add_rollout(
        "nav-hotfix",
        RolloutPhase.PROGRESSING,
        [("pilot", "canary", WavePhase.RUNNING, mix(queued=3, deployed=2))],
    )


def phase(name: str, to: RolloutPhase) -> Callable[[Fleet], None]:
    def change(fleet: Fleet) -> None:
        index = next(i for i, r in enumerate(fleet.rollouts) if r.name == name)
        fleet.rollouts[index] = fleet.rollouts[index].model_copy(update={"phase": to})

    return change


def rollback_wave(fleet: Fleet) -> None:
    """A rollback wave over robots an earlier wave holds: the same robot twice in one rollout."""
    rollout = fleet.rollouts[0]
    back = WaveState(index=3, name="rollback", action="rollback", devices=rollout.waves[1].devices[:3])
    fleet.rollouts[0] = rollout.model_copy(update={"waves": (*rollout.waves, back)})


def robot_ids(fleet: Fleet, wave: int) -> list[str]:
    return list(fleet.rollouts[0].waves[wave].devices)


STEPS: list[tuple[str, Callable[[Fleet], None]]] = [
    ("a robot reports", lambda f: report(f, robot_ids(f, 2)[20], "deployed")),
    ("a robot fails", lambda f: report(f, robot_ids(f, 2)[21], "failed", "failed", "probe failed")),
    ("a robot goes offline", lambda f: offline(f, robot_ids(f, 2)[22])),
    ("every file parsed again", reparsed),
    ("a robot is retired", lambda f: retire(f, robot_ids(f, 1)[0])),
    ("a robot is added", add_robot),
    ("a rollout starts", start_rollout),
    ("a rollback wave", rollback_wave),
    ("the rollout halts", phase("nav-2-4", RolloutPhase.HALTED)),
    ("the hotfix completes", phase("nav-hotfix", RolloutPhase.COMPLETED)),
    ("the first rollout is gone", lambda f: f.rollouts.pop(0)),
]


def test_every_reconcile_of_a_sequence_writes_the_bytes_of_a_full_rebuild() -> None:
    fleet, memo, config = sample_fleet(), PagesMemo(), Config(None)
    assert pages(fleet, memo, config) == pages(fleet, None, config)
    for minute, (what, step) in enumerate(STEPS, start=1):
        step(fleet)
        assert pages(fleet, memo, config, minute) == pages(fleet, None, config, minute), what


def test_a_carried_record_follows_the_config_the_robot_should_run() -> None:
    """A robot already on the release keeps its earlier record only while its config is the same:
    a new fleet context with another config rebuilds it (queued), the same one reuses it."""
    fleet, memo = unchanged_fleet(), PagesMemo()
    same = Config(None)
    first = pages(fleet, memo, same)
    assert first == pages(fleet, None, same) and "unchanged since generation 1" in first[0]
    moved = Config("c" * 64)
    again = pages(fleet, memo, moved)
    assert again == pages(fleet, None, moved) and "unchanged since generation 1" not in again[0]
    assert pages(fleet, memo, moved) == again and memo.robots_built == 0


@pytest.mark.parametrize("changed", [0, 1, 6])
def test_a_reconcile_that_changes_k_robots_builds_k_robot_views_and_squares(changed: int) -> None:
    fleet, memo, config = sample_fleet(), PagesMemo(), Config(None)
    pages(fleet, memo, config)
    total = sum(len(w.devices) for w in fleet.rollouts[0].waves)
    assert memo.robots_built == total
    view = build_view(fleet.rollouts, fleet.files, fleet.cohorts, fleet.devices, NOW, COMMIT)
    queued = [r.device for w in view.rollouts[0].waves for r in w.robots if r.status == "queued"]
    assert len(queued) >= changed
    for device_id in queued[:changed]:
        report(fleet, device_id, "downloading")
    md, html = pages(fleet, memo, config, 1)
    assert (memo.robots_built, memo.squares_rendered - offline_squares(fleet)) == (changed, changed)
    assert (md, html) == pages(fleet, None, config, 1)


def offline_squares(fleet: Fleet) -> int:
    """Offline robots' squares say how long ago they were seen: rendered on every page."""
    view = build_view(fleet.rollouts, fleet.files, fleet.cohorts, fleet.devices, NOW, COMMIT)
    return sum(1 for w in view.rollouts[0].waves for r in w.robots if r.state is RobotState.OFFLINE)


def two_rollouts() -> Fleet:
    fleet = sample_fleet()
    start_rollout(fleet)
    return fleet


def set_wave(fleet: Fleet, rollout: int, **fields: object) -> None:
    state = fleet.rollouts[rollout]
    waves = (state.waves[0].model_copy(update=fields), *state.waves[1:])
    fleet.rollouts[rollout] = state.model_copy(update={"waves": waves})


def restage(fleet: Fleet, name: str, stage: str) -> None:
    fleet.cohorts[name] = fleet.cohorts[name].model_copy(update={"stage": Stage(stage)})


UNTOUCHED_ROLLOUT: list[tuple[str, Callable[[Fleet], None], bool]] = [
    ("a report in the other rollout", lambda f: report(f, robot_ids(f, 2)[20], "deployed"), True),
    ("nothing changed", lambda f: None, True),
    (
        "its wave's phase and reason",
        lambda f: set_wave(f, 1, phase=WavePhase.FAILED, reason="2 failed"),
        True,
    ),
    (  # paused: what each of its robots waits for (its hold reason) changed, so they are built
        "its own phase and reason",
        lambda f: f.rollouts.__setitem__(
            1, f.rollouts[1].model_copy(update={"phase": RolloutPhase.PAUSED, "reason": "paused by commit"})
        ),
        False,
    ),
    (
        "a report from one of its robots",
        lambda f: report(f, f.rollouts[1].waves[0].devices[0], "deployed"),
        False,
    ),
    ("its cohort's stage", lambda f: restage(f, "pilot-robots", "staging"), False),
    ("it halts", phase("nav-hotfix", RolloutPhase.HALTED), False),
    ("a robot of it is retired", lambda f: retire_id(f, f.rollouts[1].waves[0].devices[1]), False),
    ("every file parsed again", reparsed, False),
]


def retire_id(fleet: Fleet, device_id: str) -> None:
    fleet.devices[device_id] = fleet.devices[device_id].model_copy(update={"decommissioned": True})


def test_a_rollout_none_of_whose_robots_changed_is_reused_whole_and_its_own_fields_are_fresh() -> None:
    """A rollout whose robots' files, models, waves and cohorts are the objects it was built from
    is not walked robot by robot: its counts, robot lists and tables are the last build's, its
    phase, reason and waves' phases today's. Anything a robot's view reads changing builds it.
    Both pages equal a full rebuild after every step."""
    fleet, memo, config = two_rollouts(), PagesMemo(), Config(None)
    pages(fleet, memo, config)
    for minute, (what, step, reused) in enumerate(UNTOUCHED_ROLLOUT, start=1):
        step(fleet)
        got = pages(fleet, memo, config, minute)
        assert got == pages(fleet, None, config, minute), what
        assert memo.rollouts["nav-hotfix"].reused is reused, what
        if reused:
            assert memo.rollouts["nav-hotfix"].built == 0
    assert "2 failed" in got[0] and "paused by commit" in got[1]
