"""Wave statistics: which bucket each robot's deployment lands in, and the gate verdict on them."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from controller.engine.gates import Verdict, count_wave, verdict
from controller.records import (
    Action,
    Connectivity,
    DeploymentRecord,
    TargetStatus,
    apply_report,
    archive,
    new_deployment,
    time_out,
)
from controller.state.model import WaveCounts
from fleetcd.compat import UTC
from fleetcd.models.rollout import FailureThreshold
from fleetcd.planning.waves import PlannedWave, WaveAction

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def base(action: Action = Action.DEPLOY) -> DeploymentRecord:
    staged = action is Action.STAGE
    return new_deployment(
        rollout="r",
        generation=1,
        device="amr-01",
        app="navstack",
        version="1.1.0",
        release_sha256="1" * 64,
        wave=0,
        action=action,
        target_status=TargetStatus.STAGED if staged else TargetStatus.DEPLOYED,
        at=T0,
        deadline_at=T0 + timedelta(hours=1),
    )


def reported(*steps: str, error: str = "none", action: Action = Action.DEPLOY) -> DeploymentRecord:
    record = base(action)
    for step in steps:
        record = apply_report(record, step, error if step == steps[-1] else "none", "", T0)
    return record


def wave(action: WaveAction = WaveAction.DEPLOY, threshold: FailureThreshold | None = None) -> PlannedWave:
    bound = threshold or FailureThreshold(count=0)
    return PlannedWave(0, "w", ("amr-01",), 60, bound, 100.0, False, action)


@pytest.mark.parametrize(
    ("record", "link", "action", "bucket"),
    [
        (None, Connectivity.ONLINE, WaveAction.DEPLOY, "queued"),
        (base(), Connectivity.ONLINE, WaveAction.DEPLOY, "queued"),
        (base(), Connectivity.OFFLINE, WaveAction.DEPLOY, "offline"),
        (reported("downloading"), Connectivity.ONLINE, WaveAction.DEPLOY, "in_progress"),
        (reported("downloading", error="retrying"), Connectivity.ONLINE, WaveAction.DEPLOY, "in_progress"),
        (reported("downloading"), Connectivity.OFFLINE, WaveAction.DEPLOY, "offline"),
        (reported("deployed"), Connectivity.OFFLINE, WaveAction.DEPLOY, "succeeded"),
        (reported("drifted"), Connectivity.ONLINE, WaveAction.DEPLOY, "succeeded"),
        (reported("applying", "failed", error="failed"), Connectivity.ONLINE, WaveAction.DEPLOY, "failed"),
        (reported("watching", "rolled_back"), Connectivity.ONLINE, WaveAction.DEPLOY, "rolled_back"),
        (time_out(base(), T0 + timedelta(hours=2)), Connectivity.OFFLINE, WaveAction.DEPLOY, "timed_out"),
        (archive(base(), T0), Connectivity.ONLINE, WaveAction.DEPLOY, None),
        (reported("staged", action=Action.STAGE), Connectivity.ONLINE, WaveAction.STAGE, "succeeded"),
        (reported("staged", action=Action.STAGE), Connectivity.ONLINE, WaveAction.SWITCH, "queued"),
    ],
    ids=[
        "not-dispatched",
        "queued",
        "queued-offline",
        "working",
        "retrying",
        "working-offline",
        "deployed-then-offline",
        "drifted",
        "failed",
        "agent-rolled-back",
        "timed-out",
        "cancelled",
        "staged-in-stage-wave",
        "staged-waiting-for-switch",
    ],
)
def test_each_deployment_lands_in_one_bucket(
    record: DeploymentRecord | None, link: Connectivity, action: WaveAction, bucket: str | None
) -> None:
    counts = count_wave(wave(action), lambda _: record, lambda _: link)
    buckets = {k: v for k, v in counts.model_dump().items() if k != "total" and v}
    assert buckets == ({bucket: 1} if bucket else {})
    assert counts.total == 1


@pytest.mark.parametrize(
    ("counts", "threshold", "expected"),
    [
        (WaveCounts(total=10, succeeded=10), FailureThreshold(count=0), Verdict.MET),
        (WaveCounts(total=10, succeeded=9, offline=1), FailureThreshold(count=0), Verdict.OPEN),
        (WaveCounts(total=10, succeeded=9, timed_out=1), FailureThreshold(count=0), Verdict.FAILED),
        (WaveCounts(total=10, succeeded=8, rolled_back=2), FailureThreshold(percent=20), Verdict.MET),
        (WaveCounts(total=10, failed=3, queued=7), FailureThreshold(percent=20), Verdict.FAILED),
        (WaveCounts(total=0), FailureThreshold(count=0), Verdict.MET),
    ],
    ids=["all-succeeded", "offline-is-not-reported", "timeout-counts", "at-bound", "early-fail", "empty"],
)
def test_gate_verdict(counts: WaveCounts, threshold: FailureThreshold, expected: Verdict) -> None:
    assert verdict(wave(threshold=threshold), counts) is expected
