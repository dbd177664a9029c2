"""A rollout view patched robot by robot equals a cold build, over random reconciles.

``build_view`` with a memo puts only the robots whose inputs changed (another device file or
model object, a hold reason held by name, the config source for a view that read it) into the
last view: their waves' robot lists and counts, the rollout's counts and their cohorts' tables
(controller.pages.summary._patched). These tests drive one memo through random sequences of
reports, dispatches, robots going offline, files parsed again, retirements, holds by name,
pauses, halts, wave phases, rollback waves, main parsed again, cohorts edited and records a robot
writes for another robot's deployment, and after every step compare the view and both pages with
a build that has no memo; they also check the patch was the path taken where it should be.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest

from controller.pages import build_view, render_status_html, render_status_md
from controller.pages.memo import PagesMemo
from controller.pages.summary import FleetView, RobotState, by_wave, per_wave
from controller.records.model import Connectivity, DeviceState
from controller.records.transitions import apply_report
from controller.state.model import DeviceFile, RolloutPhase, WavePhase, WaveState
from fleetcd.reasons import HoldReason
from tests.test_pages import COMMIT, NOW, Fleet, cohort, record, sample_fleet, unchanged_fleet
from tests.test_pages_incremental import WITHDRAWN, Config, reparsed

SEEDS = range(60)
STEPS_PER_SEED = 25
REPORTS = (
    ("downloading", "none", ""),
    ("deployed", "none", ""),
    ("applying", "none", ""),
    ("failed", "failed", "probe failed"),
    ("rolled_back", "none", "watch failed; on 2.3.1"),
    ("downloading", "retrying", "registry returned 503; retrying"),
)
NAMED_HOLDS = (HoldReason.MAINTENANCE_WINDOW, HoldReason.RATE_LIMIT, HoldReason.REQUIREMENT_UNMET)


class World:
    """The sample fleet plus the config source its pages read (a new object: main moved)."""

    def __init__(self, fleet: Callable[[], Fleet] = sample_fleet) -> None:
        self.fleet = fleet()
        self.config = Config(None)
        self.minute = 0
        self.gone: dict[str, DeviceFile] = {}  # device files taken off the branch, to come back

    def view(self, memo: PagesMemo | None) -> FleetView:
        return build_view(
            self.fleet.rollouts, self.fleet.files, self.fleet.cohorts, self.fleet.devices,
            NOW + timedelta(minutes=self.minute), COMMIT, fleet="acme", config_of=self.config.of,
            memo=memo, config_source=self.config, withdrawals=WITHDRAWN,
        )  # fmt: skip

    def robots(self) -> list[str]:
        return sorted(self.fleet.files)


def checked(world: World, memo: PagesMemo, what: str) -> FleetView:
    """The warm view, after checking it and both pages equal a cold build, and that each cohort's
    robots per wave (kept per wave by the memo) are the ones its robots count."""
    warm, cold = world.view(memo), world.view(None)
    assert warm == cold, what
    for table in (t for r in warm.rollouts for t in r.cohorts):
        assert table.by_wave == by_wave(table.robots), what
        assert sum(n for _, n in table.by_wave) == table.counts.total, what
    assert render_status_md(warm) == render_status_md(cold), what
    assert render_status_html(warm, memo) == render_status_html(cold, None), what
    return warm


def reports(world: World, rng: random.Random) -> str:
    """A few robots report; one without a record is dispatched first (a new record)."""
    fleet = world.fleet
    for device_id in rng.sample(world.robots(), rng.randint(1, 4)):
        file = fleet.files[device_id]
        if not file.records:
            rec = record(fleet.rollouts[0].name, device_id, 0, "queued")
            assert rec is not None
            fleet.files[device_id] = file.model_copy(update={"records": (rec,)})
            continue
        activity, error, text = rng.choice(REPORTS)
        newest = apply_report(file.records[-1], activity, error, text, NOW + timedelta(minutes=world.minute))
        fleet.files[device_id] = file.model_copy(update={"records": (*file.records[:-1], newest)})
    return "reports"


def link(world: World, rng: random.Random) -> str:
    device_id = rng.choice(world.robots())
    file = world.fleet.files[device_id]
    down = rng.random() < 0.5
    state = DeviceState(
        device=device_id,
        connectivity=Connectivity.OFFLINE if down else Connectivity.ONLINE,
        last_seen=NOW - timedelta(hours=5 if down else 0),
    )
    world.fleet.files[device_id] = file.model_copy(update={"state": state})
    return "connectivity"


def reparse_some(world: World, rng: random.Random) -> str:
    if rng.random() < 0.2:
        reparsed(world.fleet)
        return "every file parsed again"
    for device_id in rng.sample(world.robots(), 5):
        file = world.fleet.files[device_id]
        world.fleet.files[device_id] = type(file).model_validate_json(file.model_dump_json())
    return "files parsed again"


def retire(world: World, rng: random.Random) -> str:
    device_id = rng.choice(world.robots())
    model = world.fleet.devices[device_id]
    world.fleet.devices[device_id] = model.model_copy(update={"decommissioned": not model.decommissioned})
    return "retired or back"


def models_again(world: World, rng: random.Random) -> str:
    world.fleet.devices = {d: m.model_copy() for d, m in world.fleet.devices.items()}
    return "main parsed again"


def hold_by_name(world: World, rng: random.Random) -> str:
    """The dispatch holds some robots of a wave by name (or none any more)."""
    state = world.fleet.rollouts[0]
    at = rng.randrange(len(state.waves))
    wave = state.waves[at]
    held: dict[str, tuple[str, ...]] = {}
    if rng.random() < 0.7:
        chosen = sorted(rng.sample(wave.devices, min(len(wave.devices), rng.randint(1, 5))))
        held = {rng.choice(NAMED_HOLDS).value: tuple(chosen)}
    waves = list(state.waves)
    waves[at] = wave.model_copy(update={"held": held})
    world.fleet.rollouts[0] = state.model_copy(update={"waves": tuple(waves)})
    return "held by name"


def rollout_phase(world: World, rng: random.Random) -> str:
    to = rng.choice(
        [RolloutPhase.PROGRESSING, RolloutPhase.PROGRESSING, RolloutPhase.PAUSED, RolloutPhase.HALTED]
    )
    world.fleet.rollouts[0] = world.fleet.rollouts[0].model_copy(update={"phase": to})
    return f"rollout {to.value}"


def wave_phase(world: World, rng: random.Random) -> str:
    state = world.fleet.rollouts[0]
    at = rng.randrange(len(state.waves))
    to = rng.choice([WavePhase.PASSED, WavePhase.RUNNING, WavePhase.SOAKING, WavePhase.AWAITING_PROMOTION])
    waves = list(state.waves)
    waves[at] = waves[at].model_copy(update={"phase": to})
    world.fleet.rollouts[0] = state.model_copy(update={"waves": tuple(waves)})
    return f"wave {at} {to.value}"


def rollback_wave(world: World, rng: random.Random) -> str:
    """A rollback wave over some robots an earlier wave holds (the same robot twice), or none."""
    state = world.fleet.rollouts[0]
    waves = [w for w in state.waves if w.name != "rollback"]
    if len(waves) == len(state.waves):
        earlier = rng.choice(waves).devices
        devices = tuple(rng.sample(earlier, min(3, len(earlier))))
        waves.append(WaveState(index=len(waves), name="rollback", action="rollback", devices=devices))
    world.fleet.rollouts[0] = state.model_copy(update={"waves": tuple(waves)})
    return "rollback wave"


def config_moved(world: World, rng: random.Random) -> str:
    world.config = Config(rng.choice([None, "c" * 64]))
    return "config source"


def cohort_edit(world: World, rng: random.Random) -> str:
    """A robot joins a cohort (it is then in two tables), or leaves one."""
    fleet = world.fleet
    name = rng.choice(sorted(fleet.cohorts))
    edited, robot = fleet.cohorts[name], rng.choice(world.robots())
    members = [d for d in edited.devices if d != robot]
    if robot not in edited.devices:
        members.append(robot)
    fleet.cohorts[name] = cohort(name, edited.stage.value, members or [robot])
    return "cohort edited"


def foreign_record(world: World, rng: random.Random) -> str:
    """A robot writes a record of another robot's deployment into its own file."""
    fleet = world.fleet
    mallory, victim = rng.sample([d for d in world.robots() if fleet.files[d].records], 2)
    stolen = fleet.files[victim].records[-1]
    forged = apply_report(stolen, "failed", "failed", "forged", NOW)
    file = fleet.files[mallory]
    fleet.files[mallory] = file.model_copy(update={"records": (*file.records, forged)})
    return "foreign record"


def untouched(world: World, rng: random.Random) -> str:
    return "nothing changed"


def reordered(world: World, rng: random.Random) -> str:
    """The files come in another order, a changed one last (the state cache appends what it
    parsed): the memo cannot pair them by position, so every wave is compared again."""
    fleet = world.fleet
    device_id = rng.choice(world.robots())
    moved = fleet.files.pop(device_id)
    fleet.files[device_id] = moved.model_copy(update={"last_report_seq": moved.last_report_seq + 1})
    return "files reordered"


def file_leaves_or_returns(world: World, rng: random.Random) -> str:
    """A robot's device file leaves the state branch (its wave keeps it, with no record), or one
    that left comes back as it was."""
    fleet = world.fleet
    if world.gone:
        device_id, file = world.gone.popitem()
        fleet.files[device_id] = file
        return "file back"
    device_id = rng.choice(world.robots())
    world.gone[device_id] = fleet.files.pop(device_id)
    return "file gone"


Step = Callable[[World, random.Random], str]
STEPS: tuple[tuple[Step, int], ...] = (
    (reports, 10),
    (link, 3),
    (reparse_some, 2),
    (retire, 2),
    (models_again, 1),
    (hold_by_name, 3),
    (rollout_phase, 2),
    (wave_phase, 2),
    (rollback_wave, 1),
    (config_moved, 1),
    (cohort_edit, 1),
    (foreign_record, 2),
    (untouched, 2),
    (reordered, 1),
    (file_leaves_or_returns, 1),
)


FLEETS = {"sample": sample_fleet, "carried": unchanged_fleet}  # the second's views read the config


@pytest.mark.parametrize("fleet", FLEETS)
@pytest.mark.parametrize("seed", SEEDS)
def test_a_patched_view_equals_a_cold_build_after_every_random_reconcile(seed: int, fleet: str) -> None:
    _random_life(seed, fleet)


def _random_life(seed: int, fleet: str) -> None:
    rng = random.Random(seed)
    world, memo = World(FLEETS[fleet]), PagesMemo()
    checked(world, memo, "first build")
    steps, weights = zip(*STEPS, strict=True)
    for world.minute in range(1, STEPS_PER_SEED + 1):
        step = rng.choices(steps, weights)[0]
        what = f"seed {seed} minute {world.minute}: {step(world, rng)}"
        checked(world, memo, what)


def test_a_report_patches_its_wave_and_cohort_and_keeps_every_other_list_and_table() -> None:
    world, memo = World(), PagesMemo()
    before = checked(world, memo, "first build").rollouts[0]
    reporter = next(r for r in before.waves[2].robots if r.state is RobotState.IN_PROGRESS)
    file = world.fleet.files[reporter.device]
    done = apply_report(file.records[-1], "deployed", "none", "", NOW)
    world.fleet.files[reporter.device] = file.model_copy(update={"records": (*file.records[:-1], done)})
    world.minute = 1
    after = checked(world, memo, "a report").rollouts[0]
    assert memo.rollouts["nav-2-4"].patched and not memo.rollouts["nav-2-4"].reused
    assert memo.robots_built == 1
    kept = [a.robots is b.robots for a, b in zip(after.waves, before.waves, strict=True)]
    assert kept == [True, True, False]
    tables = {t.name: t is old for t, old in zip(after.cohorts, before.cohorts, strict=True)}
    assert tables == {"staging-robots": True, "canary-robots": True, "production-robots": False}
    assert after.counts[RobotState.SUCCEEDED] == before.counts[RobotState.SUCCEEDED] + 1
    assert after.counts[RobotState.IN_PROGRESS] == before.counts[RobotState.IN_PROGRESS] - 1


def test_nothing_changed_reuses_every_wave_list_and_table_and_builds_no_robot() -> None:
    world, memo = World(), PagesMemo()
    before = checked(world, memo, "first build").rollouts[0]
    world.minute = 1
    after = checked(world, memo, "again").rollouts[0]
    assert memo.rollouts["nav-2-4"].reused and memo.robots_built == 0
    assert all(a.robots is b.robots for a, b in zip(after.waves, before.waves, strict=True))
    assert all(a is b for a, b in zip(after.cohorts, before.cohorts, strict=True))


def test_a_pause_is_not_patched_it_rebuilds_every_waiting_robot() -> None:
    """A pause changes every waiting robot's hold without a file changing: no patch by name."""
    world, memo = World(), PagesMemo()
    checked(world, memo, "first build")
    world.fleet.rollouts[0] = world.fleet.rollouts[0].model_copy(update={"phase": RolloutPhase.PAUSED})
    world.minute = 1
    after = checked(world, memo, "paused").rollouts[0]
    assert not memo.rollouts["nav-2-4"].patched
    waiting = {r.hold for r in after.waves[2].robots if r.status.startswith("waiting")}
    assert waiting == {HoldReason.PAUSED}


def test_a_robot_held_by_name_is_patched_alone() -> None:
    world, memo = World(), PagesMemo()
    before = checked(world, memo, "first build").rollouts[0]
    pending = [r.device for r in before.waves[2].robots if r.status.startswith("waiting")]
    state = world.fleet.rollouts[0]
    held = {HoldReason.RATE_LIMIT.value: (pending[1],)}
    world.fleet.rollouts[0] = state.model_copy(
        update={"waves": (*state.waves[:2], state.waves[2].model_copy(update={"held": held}))}
    )
    world.minute = 1
    after = checked(world, memo, "held").rollouts[0]
    assert memo.rollouts["nav-2-4"].patched and memo.robots_built == 1
    assert {r.device: r.hold for r in after.waves[2].robots}[pending[1]] is HoldReason.RATE_LIMIT


def test_attack_a_robot_writing_another_robots_deployment_leaves_that_robots_row_and_counts() -> None:
    """Mallory's file gains a failed copy of the victim's record: only Mallory's own row moves.
    The victim's view is the very object of the last build, and the wave's counts move by
    Mallory's change alone."""
    world, memo = World(), PagesMemo()
    before = checked(world, memo, "first build").rollouts[0]
    production = before.waves[2]
    by_device = {r.device: r for r in production.robots}
    victim = next(r.device for r in production.robots if r.state is RobotState.SUCCEEDED)
    mallory = next(r.device for r in production.robots if r.state is RobotState.IN_PROGRESS)
    stolen = world.fleet.files[victim].records[-1]
    forged = apply_report(stolen, "failed", "failed", "forged", NOW)
    file = world.fleet.files[mallory]
    world.fleet.files[mallory] = file.model_copy(update={"records": (*file.records, forged)})
    world.minute = 1
    after = checked(world, memo, "forged").rollouts[0]
    assert memo.robots_built == 1
    rows = {r.device: r for r in after.waves[2].robots}
    assert rows[victim] is by_device[victim]
    assert all(rows[d] is by_device[d] for d in rows if d != mallory)
    diff = {
        state: after.waves[2].counts[state] - production.counts[state]
        for state in RobotState
        if after.waves[2].counts[state] != production.counts[state]
    }
    assert diff in ({}, {RobotState.IN_PROGRESS: -1, rows[mallory].state: 1})
    assert after.waves[2].counts.total == production.counts.total


def test_a_retired_robot_leaves_its_cohort_table_and_the_rollout_counts_then_comes_back() -> None:
    world, memo = World(), PagesMemo()
    before = checked(world, memo, "first build").rollouts[0]
    gone = before.waves[1].robots[0].device
    retire_now = world.fleet.devices[gone].model_copy(update={"decommissioned": True})
    world.fleet.devices[gone] = retire_now
    world.minute = 1
    after = checked(world, memo, "retired").rollouts[0]
    assert memo.rollouts["nav-2-4"].patched
    assert after.counts.total == before.counts.total - 1
    assert gone not in {r.device for t in after.cohorts for r in t.robots}
    world.fleet.devices[gone] = retire_now.model_copy(update={"decommissioned": False})
    world.minute = 2
    again = checked(world, memo, "back").rollouts[0]
    assert again.counts == before.counts


def test_attack_an_earlier_wave_soaking_rebuilds_the_later_waves_waiting_robots_in_a_patch() -> None:
    """Canary soaks again: every waiting robot of production now waits for the soak though no
    file changed. The patch rebuilds the later wave's robots and keeps the earlier waves' lists."""
    world, memo = World(), PagesMemo()
    state = world.fleet.rollouts[0]
    running = state.waves[1].model_copy(update={"phase": WavePhase.RUNNING})  # the active wave
    world.fleet.rollouts[0] = state = state.model_copy(
        update={"waves": (state.waves[0], running, state.waves[2])}
    )
    before = checked(world, memo, "first build").rollouts[0]
    soaking = state.waves[1].model_copy(update={"phase": WavePhase.SOAKING})
    world.fleet.rollouts[0] = state.model_copy(update={"waves": (state.waves[0], soaking, state.waves[2])})
    world.minute = 1
    after = checked(world, memo, "soaking").rollouts[0]
    assert memo.rollouts["nav-2-4"].patched
    assert [a.robots is b.robots for a, b in zip(after.waves, before.waves, strict=True)] == [
        True,
        True,
        False,
    ]
    waiting = {r.hold for r in after.waves[2].robots if r.status.startswith("waiting")}
    assert waiting == {HoldReason.EARLIER_WAVE_SOAKING}
    assert memo.robots_built == len(after.waves[2].robots)


def test_a_cohort_counted_per_wave_from_its_tally_is_the_count_of_its_robots() -> None:
    """The memo's tally gives the table's waves as its robots count them; an index holding two
    names (the order they are met in would matter) is counted from the robots instead."""
    world, memo = World(), PagesMemo()
    view = checked(world, memo, "first build")
    table = max((t for r in view.rollouts for t in r.cohorts), key=lambda t: len(t.robots))
    assert by_wave(table.robots, per_wave(table.robots)) == by_wave(table.robots) == table.by_wave
    robots = table.robots
    renamed = [replace(r, wave="other") if i % 2 else r for i, r in enumerate(robots)]
    index = robots[0].wave_index
    reordered = Counter({(index, "other"): 1, (index, robots[0].wave): len(robots) - 1})
    assert by_wave(renamed, reordered) == by_wave(renamed)
    assert dict(by_wave(renamed))["other"] == len(robots) // 2
    assert list(dict(by_wave(renamed))) == [robots[0].wave, "other"]  # the order met in the table
    emptied = per_wave(robots)
    emptied[(index + 7, "gone")] = 0  # a wave all of the cohort's robots left
    assert by_wave(robots, emptied) == table.by_wave


def test_attack_a_build_that_fails_midway_leaves_a_memo_the_next_build_heals() -> None:
    """The config source raises in the middle of a patched build (a view that reads it is being
    built): the memo does not keep the half-patched rollout, and the next build equals a cold
    one."""
    world, memo = World(unchanged_fleet), PagesMemo()
    checked(world, memo, "first build")
    rng = random.Random(7)
    for _ in range(3):
        reports(world, rng)
    world.config = Config("c" * 64)
    calls = 0

    def failing(app: str, device: str) -> str | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("config source went away")
        return world.config.of(app, device)

    with pytest.raises(RuntimeError):
        build_view(
            world.fleet.rollouts, world.fleet.files, world.fleet.cohorts, world.fleet.devices, NOW, COMMIT,
            config_of=failing, memo=memo, config_source=world.config,
        )  # fmt: skip
    assert calls == 1 and memo.rollouts == {}
    world.minute = 1
    checked(world, memo, "after the failure")
    world.minute = 2
    reports(world, rng)
    checked(world, memo, "a report after the failure")


def test_a_robot_whose_file_leaves_is_not_kept_from_the_memo() -> None:
    """A robot's file leaves the state branch: the pages show it without a record (as a cold build
    does), and its old row does not come back from the memo."""
    world, memo = World(), PagesMemo()
    before = checked(world, memo, "first build")
    busy = next(r for w in before.rollouts[0].waves for r in w.robots if r.state is RobotState.IN_PROGRESS)
    del world.fleet.files[busy.device]
    world.minute = 1
    after = checked(world, memo, "file gone")
    rows = {r.device: r for w in after.rollouts[0].waves for r in w.robots}
    assert rows[busy.device].state is not RobotState.IN_PROGRESS and rows[busy.device].last_seen is None
