"""Every robot waiting in a rollout carries one hold reason, in every waiting state (state/holds.py).

Before, only robots of the active wave held by a window or the rate limit had a reason (the
wave's, shared); robots of later waves — waiting for an earlier wave's reports and failure
budget, its soak, or a promotion — and robots of a scheduled, paused, halted, aborted or
withdrawn rollout showed "not dispatched" and nothing else. One rollout is walked here, tick by
tick on the engine simulator, through each of those states, and after every tick every targeted
robot without a deployment must have exactly the reason that holds it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.ops.listing import DEVICE_COLUMNS, waiting_for
from controller.pages.markdown import render_status_md
from controller.pages.memo import PagesMemo
from controller.pages.summary import build_view
from controller.state.holds import Holds
from controller.state.model import RolloutPhase, RolloutState, WavePhase
from fleetcd.reasons import HoldReason
from tests.sim.engine import NAME, SHA_NEW, T0, Sim, device, robots, rollout_doc

R = HoldReason
WAVES = [
    {"name": "first", "percent": 25, "soak_seconds": 600, "failure_threshold": {"count": 0}},
    {"name": "second", "percent": 50, "soak_seconds": 60, "manual_promotion": True},
    {"name": "rest", "percent": 100, "soak_seconds": 60},
]
NIGHT = [{"start": "22:00", "end": "23:00"}]  # T0 is a Monday 10:00 UTC: closed for 12 hours


def make_sim(night: str | None = None, **fields: object) -> Sim:
    """12 robots in WAVES (or ``strategy``); robot ``night`` may change only from 22:00 UTC."""
    ids = robots(12)
    devices = [device(d, windows=NIGHT if d == night else ()) for d in ids]
    fields = {"strategy": {"type": "waves", "waves": WAVES}, **fields}
    return Sim(rollout_doc(ids, **fields), devices)


def waiting(sim: Sim) -> dict[str, HoldReason | None]:
    """Every targeted robot without a deployment of this generation, and its reason."""
    state = sim.rollout_state
    holds = Holds(state)
    out: dict[str, HoldReason | None] = {}
    for wave in state.waves:
        for dev in wave.devices:
            if dev not in out and sim.record(dev) is None and dev not in state.rolled_back_devices:
                out[dev] = holds.of(wave.index, dev)
    return out


def members(state: RolloutState, name: str) -> tuple[str, ...]:
    return next(w.devices for w in state.waves if w.name == name)


def assert_every_waiting_robot_has_a_reason(sim: Sim) -> None:
    reasons = waiting(sim)
    missing = sorted(d for d, why in reasons.items() if why is None or not why.value)
    assert not missing, f"{missing} wait without a reason ({sim.phase().value})"


def test_a_rollout_walked_through_every_waiting_state_gives_each_waiting_robot_its_reason() -> None:
    probe = make_sim()
    probe.tick()
    night = members(probe.rollout_state, "rest")[-1]  # the last wave's robot with a night window
    not_before = (T0 + timedelta(minutes=10)).isoformat()
    sim = make_sim(night, download_rate_per_minute=1, schedule={"not_before": not_before})
    seen: set[HoldReason] = set()

    def check(expected: dict[str, HoldReason]) -> None:
        reasons = waiting(sim)
        assert_every_waiting_robot_has_a_reason(sim)
        assert reasons == expected
        seen.update(r for r in reasons.values() if r is not None)

    # Scheduled: not_before is 10 minutes away, everyone waits for it.
    sim.tick()
    assert sim.phase() is RolloutPhase.SCHEDULED
    state = sim.rollout_state
    check(dict.fromkeys(robots(12), R.NOT_BEFORE))
    first, second, rest = (members(state, n) for n in ("first", "second", "rest"))

    # Started: one download a minute. The first wave's other robots wait for the rate limit; the
    # later waves for the first wave's gate (its robots' reports, within its failure budget).
    sim.tick(timedelta(minutes=11))
    state = sim.rollout_state
    assert sim.phase() is RolloutPhase.PROGRESSING and state.waves[0].phase is WavePhase.WAITING
    [dispatched] = sim.dispatched()
    check(
        dict.fromkeys([d for d in first if d != dispatched], R.RATE_LIMIT)
        | dict.fromkeys(second + rest, R.EARLIER_WAVE)
    )
    assert state.waves[0].held == {"rate_limit": tuple(d for d in first if d != dispatched)}

    # The first wave dispatched and deployed: it soaks; the later waves wait for the soak.
    while len(sim.dispatched()) < len(first):
        sim.tick(timedelta(seconds=61))
    check(dict.fromkeys(second + rest, R.EARLIER_WAVE))
    sim.succeed(*first)
    sim.tick(timedelta(seconds=5))
    assert sim.wave("first").phase is WavePhase.SOAKING
    check(dict.fromkeys(second + rest, R.EARLIER_WAVE_SOAKING))

    # Soaked: the second wave runs, then waits for its manual promotion.
    sim.tick(timedelta(seconds=601))
    while len(sim.dispatched()) < len(first) + len(second):
        sim.tick(timedelta(seconds=61))
    sim.succeed(*second)
    sim.tick(timedelta(seconds=5))
    sim.tick(timedelta(seconds=61))
    assert sim.wave("second").phase is WavePhase.AWAITING_PROMOTION
    check(dict.fromkeys(rest, R.AWAITING_PROMOTION))

    # Paused: every robot still waiting waits for the resume, and no one is held by name.
    sim.edit(paused=True)
    sim.tick(timedelta(seconds=5))
    assert sim.phase() is RolloutPhase.PAUSED
    check(dict.fromkeys(rest, R.PAUSED))
    assert all(not w.held for w in sim.rollout_state.waves)
    sim.edit(paused=False)

    # Withdrawn: a withdrawal on main names the release; nothing new starts.
    sim.withdrawn = frozenset({SHA_NEW})
    sim.tick(timedelta(seconds=5))
    check(dict.fromkeys(rest, R.RELEASE_WITHDRAWN))
    sim.withdrawn = frozenset()

    # Promoted: the last wave runs; its night robot waits for its window, the others for the rate.
    sim.edit(promote=1)
    sim.tick(timedelta(seconds=61))
    assert sim.wave("rest").phase is WavePhase.WAITING
    reasons = waiting(sim)
    assert reasons[night] is R.MAINTENANCE_WINDOW
    assert set(reasons.values()) <= {R.MAINTENANCE_WINDOW, R.RATE_LIMIT} and R.RATE_LIMIT in reasons.values()
    seen.update(r for r in reasons.values() if r is not None)
    while len(waiting(sim)) > 1:
        sim.tick(timedelta(seconds=61))
    sim.succeed(*(d for d in rest if d != night))
    sim.tick(timedelta(seconds=5))
    check({night: R.MAINTENANCE_WINDOW})
    assert sim.rollout_state.waves[2].held == {"maintenance_window": (night,)}
    assert sim.rollout_state.waves[2].reason == "maintenance_window"

    # 22:00 UTC: its window opens and it gets its deployment; nobody waits.
    sim.now = T0.replace(hour=22, minute=1)
    sim.tick()
    check({})
    assert all(not w.held for w in sim.rollout_state.waves)
    assert seen == {
        R.NOT_BEFORE,
        R.RATE_LIMIT,
        R.EARLIER_WAVE,
        R.EARLIER_WAVE_SOAKING,
        R.AWAITING_PROMOTION,
        R.PAUSED,
        R.RELEASE_WITHDRAWN,
        R.MAINTENANCE_WINDOW,
    }


def test_robots_a_halt_stopped_before_their_wave_wait_as_halted() -> None:
    sim = make_sim()
    sim.tick()
    state = sim.rollout_state
    first, later = members(state, "first"), members(state, "second") + members(state, "rest")
    sim.fail(first[0])
    sim.tick(timedelta(seconds=5))
    assert sim.phase() in (RolloutPhase.ROLLING_BACK, RolloutPhase.HALTED)
    reasons = waiting(sim)
    assert {d: reasons[d] for d in later} == dict.fromkeys(later, R.HALTED)


def test_robots_of_an_aborted_rollout_wait_as_aborted() -> None:
    sim = make_sim()
    sim.tick()
    sim.edit(aborted=True)
    sim.tick(timedelta(seconds=5))
    assert sim.phase() is RolloutPhase.ABORTED
    assert set(waiting(sim).values()) == {R.ABORTED}


def test_a_robot_outside_its_window_waits_for_the_window_by_name() -> None:
    sim = make_sim("amr-12", strategy={"type": "all_at_once"})
    sim.tick()
    assert waiting(sim) == {"amr-12": R.MAINTENANCE_WINDOW}
    assert sim.rollout_state.waves[0].reason == "maintenance_window"
    sim.succeed(*sim.dispatched())
    sim.tick(timedelta(hours=12, minutes=5))  # 22:05 UTC: its window is open
    assert waiting(sim) == {}
    assert sim.rollout_state.waves[0].held == {}


def test_a_robot_that_joined_since_the_last_tick_is_due() -> None:
    sim = make_sim(strategy={"type": "all_at_once"})
    sim.tick()
    state = sim.rollout_state
    wave = state.waves[0]
    joined = state.model_copy(
        update={"waves": (wave.model_copy(update={"devices": (*wave.devices, "new")}),)}
    )
    assert Holds(joined).of(0, "new") is R.DUE


def test_a_removed_rollout_keeps_no_robot_waiting() -> None:
    sim = make_sim()
    sim.tick()
    removed = sim.rollout_state.model_copy(update={"phase": RolloutPhase.REMOVED})
    assert Holds(removed).of(2, "amr-01") is None


def test_a_hold_reason_a_newer_controller_wrote_reads_as_waiting_for_the_wave() -> None:
    sim = make_sim(strategy={"type": "all_at_once"})
    sim.tick()
    state = sim.rollout_state
    wave = state.waves[0].model_copy(update={"held": {"solar_eclipse": ("amr-12",)}})
    assert Holds(state.model_copy(update={"waves": (wave,)})).of(0, "amr-12") is R.EARLIER_WAVE


@pytest.mark.parametrize("phase", list(RolloutPhase), ids=str)
def test_every_rollout_phase_gives_a_waiting_robot_a_reason_but_removed(phase: RolloutPhase) -> None:
    sim = make_sim()
    sim.tick()
    state = sim.rollout_state.model_copy(update={"phase": phase})
    reason = Holds(state).of(2, "amr-01")
    assert (reason is None) is (phase is RolloutPhase.REMOVED)


# --- where people read it: the status pages and ``fleetcd get devices`` ---------------------------


def soaking_sim() -> tuple[Sim, tuple[str, ...], tuple[str, ...]]:
    """The first wave deployed and soaking; the second and last waves' robots wait for the soak."""
    sim = make_sim()
    sim.tick()
    first = members(sim.rollout_state, "first")
    sim.succeed(*first)
    sim.tick(timedelta(seconds=5))
    later = members(sim.rollout_state, "second") + members(sim.rollout_state, "rest")
    return sim, first, later


def test_the_status_pages_say_what_each_waiting_robot_waits_for() -> None:
    sim, first, later = soaking_sim()
    view = build_view([sim.rollout_state], sim.files, {}, sim.devices, sim.now, "c" * 40)
    robots_shown = {r.device: r for w in view.rollouts[0].waves for r in w.robots}
    for dev in later:
        assert robots_shown[dev].hold is R.EARLIER_WAVE_SOAKING
        assert robots_shown[dev].status_text == "waiting (earlier wave soaking)"
    assert not any(robots_shown[d].status.startswith("waiting") for d in first)  # they have theirs
    markdown = render_status_md(view)
    assert f"`{later[0]}`" in markdown and "waiting (earlier wave soaking)" in markdown


def test_the_pages_memo_rebuilds_a_robot_whose_hold_changed() -> None:
    sim, _, later = soaking_sim()
    memo = PagesMemo()
    build_view([sim.rollout_state], sim.files, {}, sim.devices, sim.now, "c" * 40, memo=memo)
    sim.edit(paused=True)
    sim.tick(timedelta(seconds=5))
    view = build_view([sim.rollout_state], sim.files, {}, sim.devices, sim.now, "c" * 40, memo=memo)
    fresh = build_view([sim.rollout_state], sim.files, {}, sim.devices, sim.now, "c" * 40)
    assert view == fresh
    robots_shown = {r.device: r for w in view.rollouts[0].waves for r in w.robots}
    assert {robots_shown[d].status for d in later} == {"waiting (paused)"}


def test_get_devices_lists_each_rollout_a_robot_waits_in_with_its_reason() -> None:
    sim, first, later = soaking_sim()
    waiting_rows = waiting_for({NAME: sim.rollout_state}, sim.files)
    assert not set(first) & set(waiting_rows)  # they have their deployment
    for dev in later:
        [row] = waiting_rows[dev]
        assert row["rollout"] == NAME and row["reason"] == "earlier_wave_soaking"
        assert row["wave"] in ("second", "rest")
        cell = next(c for c in DEVICE_COLUMNS if c.header == "WAITING")
        assert cell.cell({"waiting": waiting_rows[dev]}) == f"{NAME}: earlier_wave_soaking"
