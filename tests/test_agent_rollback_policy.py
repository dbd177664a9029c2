"""The release's rollback policy (``rollback: automatic, target, checks``) on the robot.

The decisions are pure (:mod:`agent.converge.fallback` through :func:`agent.converge.machine.fail`
and :func:`~agent.converge.machine.next_action`), tested as a table; then each rule end to end with
the real controller-written repository, real gpg and git, and the real tarball executor:

* ``automatic: false`` keeps a failing new version only while it runs; one that exited still falls
  back — a robot is never left without a running version;
* ``target: <version>`` rolls back to that version when it is installed here, else to the previous
  one, and says which;
* ``checks`` run after a rollback; a failure is reported and the robot stays rolled back.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from agent.converge.fallback import PREVIOUS, Fallback, rollback_version
from agent.converge.machine import ActionKind, DesiredApp, Failure, advance, fail, next_action
from agent.errors import HealthFailed
from agent.state.journal import JournalEntry
from fleetcd.compat import UTC
from fleetcd.vocabulary import Activity, JournalActivity
from tests.sim.agent import APP, AgentWorld

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
DEP = "dep-" + "c" * 24
S = Activity
OFF = Fallback(automatic=False)


def entry(state: JournalActivity = S.WATCHING, **changes: Any) -> JournalEntry:
    fields: dict[str, Any] = {
        "deployment_id": DEP,
        "version": "1.2.0",
        "previous_version": "1.1.0",
        "state": state,
        "attempts": 1,
        "updated_at": NOW - timedelta(minutes=1),
    }
    return JournalEntry.model_validate({**fields, **changes})


# (fallback, still running, entry changes) -> (state, rollback_target, words in the reason)
FAIL_CASES: list[Any] = [
    pytest.param(PREVIOUS, True, {}, S.ROLLING_BACK, None, [], id="default-rolls-back-to-previous"),
    pytest.param(
        OFF, True, {}, S.FAILED, None, ["automatic is off", "keeps running"], id="off-keeps-running"
    ),
    pytest.param(
        OFF, False, {}, S.ROLLING_BACK, None, ["not running: falling back"], id="off-but-exited-falls-back"
    ),
    pytest.param(
        Fallback(target="1.0.0", target_installed=True),
        True,
        {},
        S.ROLLING_BACK,
        "1.0.0",
        ["back to 1.0.0 (rollback.target)"],
        id="target-installed-is-chosen",
    ),
    pytest.param(
        Fallback(target="1.0.0"),
        True,
        {},
        S.ROLLING_BACK,
        None,
        ["1.0.0 is not installed here", "previous version 1.1.0"],
        id="target-missing-falls-back-to-previous",
    ),
    pytest.param(
        Fallback(target="1.1.0", target_installed=True),
        True,
        {},
        S.ROLLING_BACK,
        None,
        [],
        id="target-equal-to-previous-is-just-previous",
    ),
    pytest.param(
        Fallback(target="1.2.0", target_installed=True),
        True,
        {},
        S.ROLLING_BACK,
        None,
        ["is the failing version"],
        id="target-equal-to-the-failing-version-is-refused",
    ),
    pytest.param(
        Fallback(target="1.0.0"),
        True,
        {"previous_version": None},
        S.ROLLING_BACK,
        None,
        ["no version (the app is stopped)"],
        id="first-install-with-a-missing-target-stops-the-app",
    ),
    pytest.param(
        Fallback(automatic=False, target="1.0.0", target_installed=True),
        False,
        {},
        S.ROLLING_BACK,
        "1.0.0",
        ["falling back", "rollback.target"],
        id="off-exited-with-target-goes-to-the-target",
    ),
]


@pytest.mark.parametrize(("fallback", "running", "changes", "state", "target", "words"), FAIL_CASES)
def test_a_failure_after_the_switch_follows_the_rollback_policy(
    fallback: Fallback,
    running: bool,
    changes: dict[str, Any],
    state: JournalActivity,
    target: str | None,
    words: list[str],
) -> None:
    moved = fail(
        entry(**changes),
        Failure.PERMANENT,
        "probe healthz failed",
        NOW,
        still_running=running,
        fallback=fallback,
    )

    assert (moved.state, moved.rollback_target) == (state, target)
    assert moved.reason is not None and moved.reason.startswith("probe healthz failed")
    for word in words:
        assert word in moved.reason


@pytest.mark.parametrize(
    ("fallback", "active_running", "state"),
    [
        pytest.param(PREVIOUS, True, S.ROLLING_BACK, id="crash-looping-rolls-back"),
        pytest.param(OFF, True, S.FAILED, id="crash-looping-agent-off-and-app-up-keeps-it"),
        pytest.param(OFF, False, S.ROLLING_BACK, id="crash-looping-app-off-still-falls-back"),
    ],
)
def test_giving_up_after_max_trials_follows_the_rollback_policy(
    fallback: Fallback, active_running: bool, state: JournalActivity
) -> None:
    action = next_action(
        entry(attempts=3),
        DesiredApp(DEP, "1.2.0"),
        "1.2.0",
        NOW,
        max_trials=3,
        active_running=active_running,
        fallback=fallback,
    )

    assert action.kind is ActionKind.GIVE_UP
    assert action.entry is not None and action.entry.state is state


def test_a_chosen_target_survives_a_resume_and_the_rollback_and_a_pre_switch_failure_ignores_policy() -> None:
    rolling = fail(
        entry(), Failure.PERMANENT, "x", NOW, fallback=Fallback(target="1.0.0", target_installed=True)
    )
    resumed = next_action(rolling, None, "1.2.0", NOW, max_trials=3, known=False).entry
    assert resumed is not None and resumed.state is S.ROLLING_BACK and rollback_version(resumed) == "1.0.0"
    done = advance(resumed, NOW)
    assert (done.state, rollback_version(done)) == (S.ROLLED_BACK, "1.0.0")
    assert rollback_version(entry()) == "1.1.0"
    assert fail(entry(S.APPLYING), Failure.PERMANENT, "x", NOW, fallback=OFF).state is S.FAILED


# --- end to end ---------------------------------------------------------------------------------------


def deployed(world: AgentWorld, *versions: str) -> None:
    for version in versions:
        world.publish(version)
        assert world.once().error is None
        entry = world.entry()
        assert entry is not None and (entry.state, entry.version) == (Activity.HEALTHY, version)
        world.reconcile()


def test_automatic_off_keeps_a_running_but_failing_version_and_reports_it_failed(world: AgentWorld) -> None:
    deployed(world, "1.0.0")
    world.publish("1.1.0", "unhealthy", rollback={"automatic": False})
    dep = world.deployment_id()

    result = world.once()

    entry = world.entry()
    assert entry is not None and (entry.state, entry.version) == (Activity.FAILED, "1.1.0")
    assert "keeps running" in (entry.reason or "") and "probe_failed" in (entry.reason or "")
    assert world.executor().active(APP) == "1.1.0"
    assert world.answer() == "1.1.0"
    assert result.report is not None
    (reported,) = [d for d in result.report.deployments if d.deployment_id == dep]
    assert (reported.activity, reported.error) == ("failed", "failed")
    world.reconcile()
    assert world.record(dep).activity.value == "failed"


def test_automatic_off_still_falls_back_when_the_new_version_exited(world: AgentWorld) -> None:
    deployed(world, "1.0.0")
    world.publish("1.1.0", "crash", rollback={"automatic": False})

    world.once()

    entry = world.entry()
    assert entry is not None and entry.state is Activity.ROLLED_BACK
    assert "not running: falling back" in (entry.reason or "")
    assert world.answer("1.0.0") == "1.0.0"


def test_a_rollback_target_that_is_installed_is_where_the_robot_goes(world: AgentWorld) -> None:
    deployed(world, "1.0.0", "1.1.0")
    world.publish("1.2.0", "unhealthy", rollback={"target": "1.0.0"})

    result = world.once()

    entry = world.entry()
    assert entry is not None and (entry.state, entry.rollback_target) == (Activity.ROLLED_BACK, "1.0.0")
    assert world.executor().active(APP) == "1.0.0"
    assert world.answer("1.0.0") == "1.0.0"
    assert (
        result.report is not None
        and "back to 1.0.0 (rollback.target)" in result.report.deployments[0].message
    )


def test_a_rollback_target_that_is_not_installed_falls_back_to_the_previous_version_and_says_so(
    world: AgentWorld,
) -> None:
    deployed(world, "1.0.0")
    world.publish("1.1.0", "unhealthy", rollback={"target": "0.9.0"})

    world.once()

    entry = world.entry()
    assert entry is not None and (entry.state, entry.rollback_target) == (Activity.ROLLED_BACK, None)
    assert "rollback.target 0.9.0 is not installed here; back to the previous version 1.0.0" in (
        entry.reason or ""
    )
    assert world.answer("1.0.0") == "1.0.0"


def test_a_failing_rollback_check_is_reported_and_the_robot_stays_rolled_back(world: AgentWorld) -> None:
    deployed(world, "1.0.0")
    check = {"name": "arm-homed", "type": "file", "path": str(world.root / "never"), "attempts": 1}
    world.publish("1.1.0", "unhealthy", rollback={"checks": [check]})
    dep = world.deployment_id()

    result = world.once()

    entry = world.entry()
    assert entry is not None and entry.state is Activity.ROLLED_BACK
    assert world.answer("1.0.0") == "1.0.0"
    assert isinstance(result.error, HealthFailed) and result.error.probe == "arm-homed"
    assert result.report is not None and "arm-homed" in (result.report.last_error or "")
    (reported,) = [d for d in result.report.deployments if d.deployment_id == dep]
    assert reported.activity is Activity.ROLLED_BACK
    assert "after the rollback: check 'arm-homed'" in reported.message
    assert world.once().apps[APP].action is ActionKind.NONE  # reported, not retried


def test_a_passing_rollback_check_reports_a_clean_rollback(world: AgentWorld) -> None:
    deployed(world, "1.0.0")
    check = {
        "name": "healthz",
        "type": "http",
        "url": f"http://127.0.0.1:{world.port}/healthz",
        "attempts": 5,
        "interval_seconds": 1,
    }
    world.publish("1.1.0", "unhealthy", rollback={"checks": [check]})

    result = world.once()

    entry = world.entry()
    assert entry is not None and entry.state is Activity.ROLLED_BACK
    assert result.error is None
    assert "after the rollback" not in (entry.reason or "")
