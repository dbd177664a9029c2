"""The converge state machine's decision table (pure): what a robot does next from its journal,
its desired deployment and the version active on it — fresh, after a crash in each state, with a
crash-looping version, with a superseded or withdrawn deployment, and for stage/rollback actions."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.converge.machine import (
    ActionKind,
    DesiredApp,
    Failure,
    advance,
    fail,
    next_action,
    reported,
)
from agent.state.journal import Journal, JournalEntry
from fleetcd.compat import UTC
from fleetcd.vocabulary import Activity, JournalActivity

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(minutes=5)
DEP, OTHER = "dep-" + "a" * 24, "dep-" + "b" * 24
S = Activity


def entry(state: JournalActivity, **changes: Any) -> JournalEntry:
    fields: dict[str, Any] = {
        "deployment_id": DEP,
        "version": "1.1.0",
        "previous_version": "1.0.0",
        "state": state,
        "attempts": 1 if state in (S.SWITCHED, S.WATCHING) else 0,
        "updated_at": EARLIER,
    }
    fields.update(changes)
    return JournalEntry.model_validate(fields)


def want(deployment_id: str = DEP, version: str = "1.1.0", action: str = "deploy", **kw: Any) -> DesiredApp:
    return DesiredApp(deployment_id, version, action, **kw)  # type: ignore[arg-type]


# (journal entry, desired, active version, extra kwargs) -> (kind, state recorded, attempts, previous)
CASES: list[Any] = [
    pytest.param(None, None, None, {}, ActionKind.NONE, None, None, None, id="first-boot-nothing-desired"),
    pytest.param(
        None, want(), "1.0.0", {}, ActionKind.START, S.DOWNLOADING, 0, "1.0.0", id="new-deployment-downloads"
    ),
    pytest.param(None, want(), None, {}, ActionKind.START, S.DOWNLOADING, 0, None, id="first-install-ever"),
    pytest.param(
        entry(S.HEALTHY, committed=True),
        want(),
        "1.1.0",
        {},
        ActionKind.NONE,
        None,
        None,
        None,
        id="same-deployment-already-healthy",
    ),
    pytest.param(
        entry(S.FAILED), want(), "1.0.0", {}, ActionKind.NONE, None, None, None, id="failed-id-is-not-retried"
    ),
    pytest.param(
        entry(S.ROLLED_BACK),
        want(),
        "1.0.0",
        {},
        ActionKind.NONE,
        None,
        None,
        None,
        id="rolled-back-id-is-not-retried",
    ),
    pytest.param(
        entry(S.ROLLED_BACK),
        want(OTHER, "1.2.0"),
        "1.0.0",
        {},
        ActionKind.START,
        S.DOWNLOADING,
        0,
        "1.0.0",
        id="new-id-after-a-rollback-starts",
    ),
    pytest.param(
        entry(S.DOWNLOADING),
        want(),
        "1.0.0",
        {},
        ActionKind.RESUME,
        S.DOWNLOADING,
        0,
        "1.0.0",
        id="crash-in-downloading",
    ),
    pytest.param(
        entry(S.VERIFYING),
        want(),
        "1.0.0",
        {},
        ActionKind.RESUME,
        S.VERIFYING,
        0,
        "1.0.0",
        id="crash-in-verifying",
    ),
    pytest.param(
        entry(S.APPLYING),
        want(),
        "1.0.0",
        {},
        ActionKind.RESUME,
        S.APPLYING,
        0,
        "1.0.0",
        id="crash-in-applying",
    ),
    pytest.param(
        entry(S.SWITCHED),
        want(),
        "1.1.0",
        {},
        ActionKind.RESUME,
        S.SWITCHED,
        2,
        "1.0.0",
        id="crash-in-switched",
    ),
    pytest.param(
        entry(S.WATCHING),
        want(),
        "1.1.0",
        {},
        ActionKind.RESUME,
        S.SWITCHED,
        2,
        "1.0.0",
        id="crash-in-watching",
    ),
    pytest.param(
        entry(S.WATCHING, attempts=3),
        want(),
        "1.1.0",
        {},
        ActionKind.GIVE_UP,
        S.ROLLING_BACK,
        3,
        "1.0.0",
        id="crash-looping-past-max-trials-rolls-back",
    ),
    pytest.param(
        entry(S.WATCHING, attempts=3),
        None,
        "1.1.0",
        {"known": False},
        ActionKind.SUPERSEDE,
        S.ROLLING_BACK,
        3,
        "1.0.0",
        id="crash-looping-offline-rolls-back-without-network",
    ),
    pytest.param(
        entry(S.ROLLING_BACK),
        want(),
        "1.1.0",
        {},
        ActionKind.RESUME,
        S.ROLLING_BACK,
        0,
        "1.0.0",
        id="crash-in-rolling-back-redoes-it",
    ),
    pytest.param(
        entry(S.ROLLING_BACK),
        None,
        "1.0.0",
        {"known": False},
        ActionKind.RESUME,
        S.ROLLING_BACK,
        0,
        "1.0.0",
        id="rolling-back-needs-no-desired-state",
    ),
    pytest.param(
        entry(S.HEALTHY),
        want(),
        "1.1.0",
        {},
        ActionKind.RESUME,
        S.HEALTHY,
        0,
        "1.0.0",
        id="crash-before-commit-redoes-commit",
    ),
    pytest.param(
        entry(S.APPLYING),
        want(OTHER, "1.2.0"),
        "1.0.0",
        {},
        ActionKind.START,
        S.DOWNLOADING,
        0,
        "1.0.0",
        id="unswitched-deployment-superseded-starts-the-new-one",
    ),
    pytest.param(
        entry(S.WATCHING),
        want(OTHER, "1.2.0"),
        "1.1.0",
        {},
        ActionKind.SUPERSEDE,
        S.ROLLING_BACK,
        1,
        "1.0.0",
        id="switched-deployment-superseded-rolls-back-first",
    ),
    pytest.param(
        entry(S.APPLYING),
        None,
        "1.0.0",
        {},
        ActionKind.ABANDON,
        S.IDLE,
        0,
        "1.0.0",
        id="withdrawn-before-the-switch-is-abandoned",
    ),
    pytest.param(
        entry(S.APPLYING),
        None,
        "1.0.0",
        {"known": False},
        ActionKind.NONE,
        None,
        None,
        None,
        id="no-trustworthy-desired-state-waits",
    ),
    pytest.param(
        entry(S.HEALTHY, version="1.1.0", committed=True),
        want(OTHER, "1.0.0", "rollback"),
        "1.1.0",
        {},
        ActionKind.START,
        S.DOWNLOADING,
        0,
        "1.1.0",
        id="rollback-action-is-a-deployment-of-the-older-version",
    ),
    pytest.param(
        entry(S.ROLLED_BACK),
        want(OTHER, "1.0.0", "rollback"),
        "1.0.0",
        {},
        ActionKind.ADOPT,
        S.HEALTHY,
        0,
        None,
        id="rollback-to-the-version-already-running-is-adopted",
    ),
    pytest.param(
        None,
        want(action="stage"),
        "1.0.0",
        {},
        ActionKind.START,
        S.DOWNLOADING,
        0,
        "1.0.0",
        id="stage-action-starts-stage-only",
    ),
    pytest.param(
        entry(S.STAGED, stage_only=True, action="stage"),
        want(action="stage"),
        "1.0.0",
        {},
        ActionKind.NONE,
        None,
        None,
        None,
        id="staged-waits-for-the-switch",
    ),
    pytest.param(
        entry(S.STAGED, stage_only=True, action="stage"),
        want(action="deploy"),
        "1.0.0",
        {},
        ActionKind.PROMOTE,
        S.VERIFYING,
        0,
        "1.0.0",
        id="staged-then-deploy-promotes",
    ),
    pytest.param(
        None,
        want(not_before=NOW + timedelta(hours=1)),
        "1.0.0",
        {},
        ActionKind.NONE,
        None,
        None,
        None,
        id="not-before-in-the-future-waits",
    ),
    pytest.param(
        None,
        want(),
        "1.1.0",
        {"active_running": False},
        ActionKind.START,
        S.DOWNLOADING,
        0,
        None,
        id="desired-version-installed-but-not-running-is-converged",
    ),
]


@pytest.mark.parametrize(
    ("current", "desired", "active", "kwargs", "kind", "state", "attempts", "previous"), CASES
)
def test_decision_table(
    current: JournalEntry | None,
    desired: DesiredApp | None,
    active: str | None,
    kwargs: dict[str, Any],
    kind: ActionKind,
    state: JournalActivity | None,
    attempts: int | None,
    previous: str | None,
) -> None:
    action = next_action(current, desired, active, NOW, max_trials=3, **kwargs)

    assert action.kind is kind, action.reason
    if state is None:
        assert action.entry is None
        return
    assert action.entry is not None
    assert (action.entry.state, action.entry.attempts, action.entry.previous_version) == (
        state,
        attempts,
        previous,
    )
    assert action.entry.updated_at == NOW


CONFIG_ONLY: list[Any] = [
    pytest.param(
        entry(S.HEALTHY, committed=True, version="1.0.0", previous_version=None),
        want(OTHER, "1.0.0", config_current=False),
        "1.0.0",
        (ActionKind.START, S.VERIFYING, True, "1.0.0"),
        id="same-version-new-config-is-verified-then-switched",
    ),
    pytest.param(
        entry(S.HEALTHY, committed=True, version="1.0.0", previous_version=None),
        want(OTHER, "1.0.0", config_current=True),
        "1.0.0",
        (ActionKind.ADOPT, S.HEALTHY, False, None),
        id="same-version-same-config-is-adopted",
    ),
    pytest.param(
        None,
        want(OTHER, "1.1.0", config_current=False),
        "1.0.0",
        (ActionKind.START, S.DOWNLOADING, False, "1.0.0"),
        id="new-version-new-config-is-a-release-deployment",
    ),
    pytest.param(
        entry(S.HEALTHY, committed=True, version="1.0.0", previous_version=None),
        want(OTHER, "1.0.0", "stage", config_current=False),
        "1.0.0",
        (ActionKind.ADOPT, S.STAGED, False, None),
        id="stage-of-the-running-version-stages-nothing",
    ),
    pytest.param(
        entry(S.STAGED, deployment_id=OTHER, version="1.0.0", previous_version=None, stage_only=True),
        want(OTHER, "1.0.0", "deploy", config_current=False),
        "1.0.0",
        (ActionKind.PROMOTE, S.VERIFYING, True, "1.0.0"),
        id="blue-green-switch-of-a-config-change-is-config-only",
    ),
    pytest.param(
        entry(S.STAGED, deployment_id=OTHER, version="1.0.0", previous_version=None, stage_only=True),
        want(OTHER, "1.0.0", "deploy", config_current=True),
        "1.0.0",
        (ActionKind.ADOPT, S.HEALTHY, False, None),
        id="blue-green-switch-to-what-runs-is-adopted",
    ),
]


@pytest.mark.parametrize(("current", "desired", "active", "expected"), CONFIG_ONLY)
def test_config_only_decisions(
    current: JournalEntry | None, desired: DesiredApp, active: str, expected: tuple[Any, ...]
) -> None:
    action = next_action(current, desired, active, NOW, max_trials=3)
    assert action.entry is not None
    got = (action.kind, action.entry.state, action.entry.config_only, action.entry.previous_version)
    assert got == expected, action.reason


def test_a_config_only_deployment_skips_applying_and_counts_a_start() -> None:
    verifying = entry(S.VERIFYING, version="1.0.0", previous_version="1.0.0", config_only=True)
    switched = advance(verifying, NOW)
    assert (switched.state, switched.attempts, switched.config_only) == (S.SWITCHED, 1, True)
    watching = advance(switched, NOW)
    failed = fail(watching, Failure.PERMANENT, "probe healthz failed", NOW)
    assert (failed.state, failed.previous_version, failed.config_only) == (S.ROLLING_BACK, "1.0.0", True)


def test_stage_action_marks_the_entry_stage_only_and_a_deploy_clears_it() -> None:
    staged = next_action(None, want(action="stage"), "1.0.0", NOW, max_trials=3).entry
    assert staged is not None and staged.stage_only
    resumed = next_action(staged, want(action="deploy"), "1.0.0", NOW, max_trials=3).entry
    assert resumed is not None and not resumed.stage_only and resumed.action == "deploy"


@pytest.mark.parametrize(
    ("state", "stage_only", "expected", "attempts"),
    [
        pytest.param(S.DOWNLOADING, False, S.VERIFYING, 0, id="downloading-to-verifying"),
        pytest.param(S.VERIFYING, False, S.APPLYING, 0, id="verifying-to-applying"),
        pytest.param(S.APPLYING, False, S.SWITCHED, 1, id="applying-to-switched-counts-a-start"),
        pytest.param(S.APPLYING, True, S.STAGED, 0, id="applying-stage-only-to-staged"),
        pytest.param(S.SWITCHED, False, S.WATCHING, 1, id="switched-to-watching"),
        pytest.param(S.WATCHING, False, S.HEALTHY, 1, id="watching-to-healthy"),
        pytest.param(S.ROLLING_BACK, False, S.ROLLED_BACK, 0, id="rolling-back-to-rolled-back"),
    ],
)
def test_advance_after_a_successful_step(
    state: JournalActivity, stage_only: bool, expected: JournalActivity, attempts: int
) -> None:
    moved = advance(entry(state, stage_only=stage_only), NOW)
    assert (moved.state, moved.attempts, moved.updated_at) == (expected, attempts, NOW)


def test_advance_keeps_the_rollback_reason_and_commit_sets_committed() -> None:
    rolled = advance(entry(S.ROLLING_BACK, reason="probe http failed"), NOW)
    assert rolled.reason == "probe http failed"
    committed = advance(entry(S.HEALTHY), NOW)
    assert committed.committed and committed.state is S.HEALTHY


@pytest.mark.parametrize("state", [S.FAILED, S.ROLLED_BACK, S.STAGED, S.IDLE], ids=str)
def test_a_settled_state_has_no_step_to_advance(state: JournalActivity) -> None:
    with pytest.raises(ValueError, match="settled"):
        advance(entry(state), NOW)


@pytest.mark.parametrize(
    ("state", "failure", "expected"),
    [
        pytest.param(S.DOWNLOADING, Failure.TRANSIENT, S.DOWNLOADING, id="download-transport-error-retries"),
        pytest.param(S.DOWNLOADING, Failure.PERMANENT, S.FAILED, id="digest-mismatch-fails-before-switch"),
        pytest.param(S.APPLYING, Failure.PERMANENT, S.FAILED, id="preflight-failure-fails-before-switch"),
        pytest.param(S.VERIFYING, Failure.DEFERRED, S.VERIFYING, id="closed-gate-defers"),
        pytest.param(S.SWITCHED, Failure.PERMANENT, S.ROLLING_BACK, id="switch-failure-rolls-back"),
        pytest.param(S.WATCHING, Failure.PERMANENT, S.ROLLING_BACK, id="unhealthy-rolls-back"),
        pytest.param(S.ROLLING_BACK, Failure.PERMANENT, S.FAILED, id="rollback-failure-is-failed"),
        pytest.param(S.HEALTHY, Failure.PERMANENT, S.HEALTHY, id="commit-failure-stays-healthy"),
    ],
)
def test_fail_decides_by_state_and_kind(
    state: JournalActivity, failure: Failure, expected: JournalActivity
) -> None:
    moved = fail(entry(state), failure, "why", NOW)
    assert moved.state is expected
    assert moved.reason is not None and "why" in moved.reason


def test_no_automatic_rollback_leaves_the_failure_as_failed() -> None:
    assert fail(entry(S.WATCHING), Failure.PERMANENT, "probe", NOW, auto_rollback=False).state is S.FAILED


def test_a_deferral_remembers_when_the_wait_began_and_advancing_forgets_it() -> None:
    first = fail(entry(S.VERIFYING), Failure.DEFERRED, "gate 'docked' is closed", EARLIER)
    later = fail(first, Failure.DEFERRED, "gate 'docked' is closed", NOW)
    assert later.first_deferred_at == EARLIER
    assert reported(later) == ("queued", "retrying")
    assert advance(later, NOW).first_deferred_at is None


@pytest.mark.parametrize(
    ("state", "reason", "expected"),
    [
        pytest.param(S.IDLE, None, ("queued", "none"), id="idle"),
        pytest.param(S.DOWNLOADING, None, ("downloading", "none"), id="downloading"),
        pytest.param(S.DOWNLOADING, "server down", ("downloading", "retrying"), id="downloading-retrying"),
        pytest.param(S.VERIFYING, None, ("verifying", "none"), id="verifying"),
        pytest.param(S.APPLYING, None, ("applying", "none"), id="applying"),
        pytest.param(S.STAGED, None, ("staged", "none"), id="staged"),
        pytest.param(S.SWITCHED, None, ("watching", "none"), id="switched"),
        pytest.param(S.WATCHING, None, ("watching", "none"), id="watching"),
        pytest.param(S.HEALTHY, None, ("deployed", "none"), id="healthy"),
        pytest.param(S.ROLLING_BACK, "probe", ("watching", "retrying"), id="rolling-back"),
        pytest.param(S.ROLLED_BACK, "probe", ("rolled_back", "failed"), id="rolled-back"),
        pytest.param(S.FAILED, "digest", ("failed", "failed"), id="failed"),
    ],
)
def test_reported_activity_per_state(
    state: JournalActivity, reason: str | None, expected: tuple[str, str]
) -> None:
    assert reported(entry(state, reason=reason)) == expected


def test_an_old_format_1_journal_without_the_new_fields_still_loads(tmp_path: Path) -> None:
    old = {
        "deployment_id": DEP,
        "version": "1.1.0",
        "previous_version": None,
        "state": "watching",
        "attempts": 1,
        "updated_at": EARLIER.isoformat(),
        "reason": None,
    }
    path = tmp_path / "nav.json"
    path.write_text(json.dumps({"format": 1, "seq": 4, "entry": old}))

    loaded = Journal(path).load()

    assert loaded is not None and loaded.state is S.WATCHING
    assert (loaded.action, loaded.stage_only, loaded.first_deferred_at, loaded.committed) == (
        "deploy",
        False,
        None,
        False,
    )
