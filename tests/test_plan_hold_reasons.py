"""``fleetcd plan`` says what each robot to update would wait for, in the controller's hold reasons.

Before, a plan listed the robots of each wave and when the wave could start, but not, per robot,
why it would not get the release at merge: missing approvals (which stall main), ``not_before``,
an earlier wave, a closed maintenance window, a release requirement. Each robot to update that
would wait has one reason, the same :class:`~fleetcd.reasons.HoldReason` ``get devices`` and the
status pages show once the controller runs it.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from fleetcd.compat import UTC
from fleetcd.planning.plan import ApprovalStatus, TrustFacts, attach_schedule, attach_trust
from fleetcd.planning.render import render_json, render_markdown, render_text
from fleetcd.reasons import HoldReason
from tests.test_plan import SUNDAY, fleet, plan_between, spec_of, windowed_fleet

R = HoldReason
ROLLOUT = "rollouts/nav-1-0-0.yaml"


def test_a_robot_outside_its_window_and_the_later_waves_robots_say_why_they_wait(tmp_path: Path) -> None:
    spec = spec_of(windowed_fleet(tmp_path))
    (rollout,) = attach_schedule(plan_between(None, spec), spec, SUNDAY).rollouts
    assert rollout.waiting == {
        "amr-001": R.MAINTENANCE_WINDOW,  # Berlin Sunday 14:00: its weekday 02:00 window is closed
        "amr-002": R.EARLIER_WAVE,
        "amr-003": R.EARLIER_WAVE,
        "amr-004": R.EARLIER_WAVE,
    }


def test_a_first_wave_robot_inside_its_window_does_not_wait(tmp_path: Path) -> None:
    spec = spec_of(windowed_fleet(tmp_path))
    monday = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)  # Berlin Monday 02:30: amr-001's window is open
    (rollout,) = attach_schedule(plan_between(None, spec), spec, monday).rollouts
    assert "amr-001" not in rollout.waiting
    assert set(rollout.waiting.values()) == {R.EARLIER_WAVE}


def test_not_before_ahead_holds_every_robot(tmp_path: Path) -> None:
    b = windowed_fleet(tmp_path)
    b.docs[ROLLOUT]["schedule"] = {"not_before": (SUNDAY + timedelta(days=2)).isoformat()}
    spec = spec_of(b)
    (rollout,) = attach_schedule(plan_between(None, spec), spec, SUNDAY).rollouts
    assert rollout.waiting == dict.fromkeys(["amr-001", "amr-002", "amr-003", "amr-004"], R.NOT_BEFORE)


def test_missing_approvals_hold_every_robot_to_update(tmp_path: Path) -> None:
    spec = spec_of(windowed_fleet(tmp_path))
    plan = attach_schedule(plan_between(None, spec), spec, SUNDAY)
    plan = attach_trust(plan, TrustFacts(approvals={"nav-1-0-0": ApprovalStatus(1, ("alice",))}))
    (rollout,) = plan.rollouts
    assert rollout.approvals_missing == 1
    assert rollout.waiting == dict.fromkeys(rollout.to_update, R.APPROVAL_MISSING)
    assert len(rollout.waiting) == 4


def test_no_window_no_schedule_and_approved_means_nobody_waits_in_one_wave(tmp_path: Path) -> None:
    spec = spec_of(fleet(tmp_path))  # all at once, no windows
    plan = attach_schedule(plan_between(None, spec), spec, SUNDAY)
    plan = attach_trust(plan, TrustFacts(approvals={"nav-1-0-0": ApprovalStatus(2, ("alice", "bob"))}))
    (rollout,) = plan.rollouts
    assert rollout.waiting == {}
    assert "waiting:" not in render_text(plan)


def test_the_text_markdown_and_json_of_a_plan_carry_the_reasons(tmp_path: Path) -> None:
    spec = spec_of(windowed_fleet(tmp_path))
    plan = attach_schedule(plan_between(None, spec), spec, SUNDAY)
    text = render_text(plan)
    assert "  waiting: 4 robots\n    maintenance_window: amr-001\n" in text
    assert "    earlier_wave: amr-002, amr-003, amr-004\n" in text
    markdown = render_markdown(plan)
    assert "| waiting for | robots |" in markdown and "| maintenance_window | amr-001 |" in markdown
    (data,) = json.loads(render_json(plan))["rollouts"]
    assert data["waiting"][0] == {"device": "amr-001", "reason": "maintenance_window"}
    assert {w["reason"] for w in data["waiting"][1:]} == {"earlier_wave"}
