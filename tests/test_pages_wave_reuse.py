"""A rollout view built again only where its robots changed: per robot, then per wave.

When a robot of a rollout changed, the rollout's view is built again, but each robot's entry is
kept by an inline test (the same device file and model objects, the same hold reason), and a
wave none of whose robots changed keeps the last view's robot list and counts (the same tuple).
These tests change one robot, a rollout's phase (a pause: every waiting robot waits for something
else), an earlier wave's gate (the later waves' waiting robots now wait for its soak), the reason
the dispatch held one robot, and a robot's model (equal, another object), and check that both
pages equal a build without a memo and which waves kept their robot lists.
"""

from __future__ import annotations

from datetime import timedelta

from controller.pages import build_view, render_status_html, render_status_md
from controller.pages.memo import PagesMemo
from controller.pages.summary import FleetView, RolloutView
from controller.state.model import RolloutPhase, WavePhase
from fleetcd.reasons import HoldReason
from tests.test_pages import COMMIT, NOW, Fleet, sample_fleet
from tests.test_pages_incremental import WITHDRAWN, Config, report, robot_ids


def view(fleet: Fleet, memo: PagesMemo | None, minutes: int) -> FleetView:
    return build_view(
        fleet.rollouts, fleet.files, fleet.cohorts, fleet.devices, NOW + timedelta(minutes=minutes), COMMIT,
        fleet="acme", config_of=Config(None).of, memo=memo, withdrawals=WITHDRAWN,
    )  # fmt: skip


def rebuilt(fleet: Fleet, memo: PagesMemo, minutes: int) -> RolloutView:
    """The first rollout's view with the memo, after checking both pages equal a cold build."""
    warm = view(fleet, memo, minutes)
    cold = view(fleet, None, minutes)
    assert render_status_md(warm) == render_status_md(cold)
    assert render_status_html(warm, memo) == render_status_html(cold, None)
    assert warm == cold
    return warm.rollouts[0]


def started(fleet: Fleet) -> tuple[PagesMemo, RolloutView]:
    memo = PagesMemo()
    return memo, rebuilt(fleet, memo, 0)


def kept(before: RolloutView, after: RolloutView) -> list[bool]:
    """Per wave: whether it kept the last view's robot list (the very tuple)."""
    return [a.robots is b.robots for a, b in zip(before.waves, after.waves, strict=True)]


def set_wave_phase(fleet: Fleet, index: int, phase: WavePhase) -> None:
    state = fleet.rollouts[0]
    waves = tuple(w.model_copy(update={"phase": phase}) if w.index == index else w for w in state.waves)
    fleet.rollouts[0] = state.model_copy(update={"waves": waves})


def waiting(rollout: RolloutView, wave: int) -> set[HoldReason | None]:
    return {r.hold for r in rollout.waves[wave].robots if r.status.startswith("waiting")}


def test_a_report_in_one_wave_builds_that_robot_and_the_other_waves_keep_their_robot_lists() -> None:
    fleet = sample_fleet()
    memo, before = started(fleet)
    report(fleet, robot_ids(fleet, 2)[20], "deployed")
    after = rebuilt(fleet, memo, 1)
    assert memo.robots_built == 1
    assert kept(before, after) == [True, True, False]
    assert after.waves[0].counts is before.waves[0].counts
    again = rebuilt(fleet, memo, 2)  # nothing changed since: every wave keeps its list
    assert kept(after, again) == [True, True, True]


def test_attack_a_pause_changes_what_waiting_robots_of_an_untouched_wave_wait_for_and_they_say_so() -> None:
    """No robot's file changed, but a paused rollout's waiting robots wait for the pause: an entry
    kept for its file alone would still say what the running rollout held it for."""
    fleet = sample_fleet()
    memo, before = started(fleet)
    assert waiting(before, 2) == {HoldReason.DUE}
    paused = {"phase": RolloutPhase.PAUSED, "reason": "paused by commit"}
    fleet.rollouts[0] = fleet.rollouts[0].model_copy(update=paused)
    after = rebuilt(fleet, memo, 1)
    assert waiting(after, 2) == {HoldReason.PAUSED}
    assert not kept(before, after)[2]


def test_attack_an_earlier_wave_soaking_changes_the_hold_of_a_later_wave_whose_files_did_not_change() -> None:
    fleet = sample_fleet()
    memo, before = started(fleet)
    set_wave_phase(fleet, 1, WavePhase.SOAKING)  # canary soaks again: production waits for it
    after = rebuilt(fleet, memo, 1)
    assert waiting(after, 2) == {HoldReason.EARLIER_WAVE_SOAKING}
    assert kept(before, after) == [True, True, False]
    set_wave_phase(fleet, 1, WavePhase.PASSED)
    again = rebuilt(fleet, memo, 2)
    assert waiting(again, 2) == {HoldReason.DUE}


def test_attack_a_dispatch_holding_one_robot_for_a_window_shows_on_that_robot_only() -> None:
    fleet = sample_fleet()
    memo, before = started(fleet)
    pending = [r.device for r in before.waves[2].robots if r.status.startswith("waiting")]
    state = fleet.rollouts[0]
    held = {HoldReason.MAINTENANCE_WINDOW.value: (pending[0],)}
    waves = (*state.waves[:2], state.waves[2].model_copy(update={"held": held}))
    fleet.rollouts[0] = state.model_copy(update={"waves": waves})
    after = rebuilt(fleet, memo, 1)
    holds = {r.device: r.hold for r in after.waves[2].robots if r.device in pending}
    assert holds == {d: HoldReason.MAINTENANCE_WINDOW if d == pending[0] else HoldReason.DUE for d in pending}
    assert memo.robots_built == 1


def test_a_robot_model_equal_but_another_object_keeps_both_pages_those_of_a_cold_build() -> None:
    """main parsed again: every model is a new, equal object; the views stay, the pages are the same."""
    fleet = sample_fleet()
    memo, before = started(fleet)
    fleet.devices = {d: m.model_copy() for d, m in fleet.devices.items()}
    after = rebuilt(fleet, memo, 1)
    assert memo.robots_built == 0
    assert [a.counts for a in after.waves] == [b.counts for b in before.waves]
    assert rebuilt(fleet, memo, 2).waves[0].robots is after.waves[0].robots


def test_a_retired_robot_in_an_untouched_wave_leaves_its_counts() -> None:
    fleet = sample_fleet()
    memo, before = started(fleet)
    retired = robot_ids(fleet, 0)[0]
    fleet.devices[retired] = fleet.devices[retired].model_copy(update={"decommissioned": True})
    after = rebuilt(fleet, memo, 1)
    assert after.waves[0].counts.total == before.waves[0].counts.total - 1
    assert kept(before, after) == [False, True, True]
