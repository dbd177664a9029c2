"""Receipts: the signed account of one finished rollout generation (pure: no I/O, no clock).

Step 5 (plan) calls :func:`build_receipt` when a generation reaches a finished phase (completed,
halted once its rollback is done, aborted); step 6 (write) renders it with
:mod:`controller.receipts.render`, signs it with the controller key and commits
``receipts/<rollout>/<generation>.yaml`` (+ ``.yaml.asc`` and ``.md``) to the state branch.

A receipt answers, from observed state only: what ran (release file digest, artifact digests), where
(each robot's outcome and the version it ended on), who approved (fingerprint, name, commit), which
gates passed with their numbers (per wave: counts, threshold, minimum reported, soak, times), what a
halt did (the ``on_halt`` policy applied and the robots it rolled back), and when. Every input
is passed in, including ``finished_at``, so the same state gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

from controller.records.model import Action, DeploymentRecord, Outcome, is_success, outcome
from controller.state.model import RolloutPhase, RolloutState, WaveCounts, WavePhase, WaveState
from fleetcd.compat import UTC
from fleetcd.models.release import (
    AppTarball,
    ConfigPayload,
    ContainerImage,
    FullImageAB,
    McuFirmware,
    ModelPayload,
    Release,
)
from fleetcd.models.rollout import HaltPolicy
from fleetcd.planning.waves import PlannedWave
from fleetcd.vocabulary import Activity, Status

RECEIPT_FORMAT = "fleetcd.dev/receipt/v1"
FINISHED_PHASES = frozenset({RolloutPhase.COMPLETED, RolloutPhase.HALTED, RolloutPhase.ABORTED})
NOT_DISPATCHED: Final = "not_dispatched"  # in a wave, but the rollout finished before the robot's turn


def _utc(value: datetime) -> datetime:
    # The same instant must render the same bytes whichever zone the controller's clock used.
    return value.astimezone(UTC)


Instant = Annotated[datetime, AfterValidator(_utc)]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ArtifactDigest(_Part):
    name: str
    kind: str
    digest: str  # "sha256:<hex>": the image manifest digest, or the file's sha256
    size: int | None = None  # bytes; None for images (the registry holds the manifest)
    source: str  # the pinned image reference or the download URL


class ReleaseRef(_Part):
    app: str
    version: str
    path: str
    sha256: str  # of the release file's bytes, which the release signers signed
    artifacts: tuple[ArtifactDigest, ...]


class ApprovalRef(_Part):
    fingerprint: str
    name: str
    commit: str  # main commit carrying the approval


class ThresholdRef(_Part):
    """The wave fails once more than ``count`` robots, or more than ``percent`` of it, failed."""

    count: int | None = None
    percent: float | None = None


class WaveGate(_Part):
    index: int
    name: str
    action: str
    phase: str
    passed: bool
    devices: int
    counts: WaveCounts
    reported: int
    reported_percent: float
    failures: int  # failed + rolled back + timed out: what the threshold is measured against
    failure_threshold: ThresholdRef | None = None  # None: the planned gate was not passed in
    min_reported_percent: float | None = None
    soak_seconds: int | None = None
    manual_promotion: bool | None = None
    started_at: Instant | None = None
    gates_met_at: Instant | None = None
    finished_at: Instant | None = None
    reason: str | None = None


class RollbackResult(_Part):
    deployment: str
    version: str
    outcome: Outcome
    status: Status


class DeviceResult(_Part):
    device: str
    wave: int
    outcome: Outcome | Literal["not_dispatched"]
    version: str  # the release this rollout sent
    running_version: str | None  # what the robot ended on, as far as its reports show; None: unknown
    deployment: str | None = None
    action: Action | None = None
    status: Status | None = None
    attempts: int = 0
    updated_at: Instant | None = None
    reason: str | None = None
    rollback: RollbackResult | None = None


class SkippedDevice(_Part):
    device: str
    reason: str


class Receipt(_Part):
    format: str = RECEIPT_FORMAT
    rollout: str
    generation: int
    generation_fingerprint: str
    commit: str  # main commit the generation was created from
    outcome: RolloutPhase
    reason: str | None = None
    # The rollout's on_halt when a wave failed (None: it never halted), and whom it rolled back.
    halt_policy: HaltPolicy | None = None
    rolled_back: tuple[str, ...] = ()
    release: ReleaseRef
    previous_version: str | None = None
    approvals: tuple[ApprovalRef, ...]
    waves: tuple[WaveGate, ...]
    devices: tuple[DeviceResult, ...]
    skipped: tuple[SkippedDevice, ...] = ()
    summary: dict[str, int]  # robots per outcome
    created_at: Instant
    finished_at: Instant


def approvals_from_state(state: RolloutState) -> tuple[ApprovalRef, ...]:
    """The generation's verified approvers, each at the commit the generation was created from."""
    return tuple(
        ApprovalRef(fingerprint=a.fingerprint, name=a.name, commit=state.commit) for a in state.approvers
    )


def build_receipt(
    state: RolloutState,
    records: Mapping[str, Sequence[DeploymentRecord]],
    release: Release,
    release_path: str,
    approvals: Sequence[ApprovalRef],
    finished_at: datetime,
    *,
    planned: Sequence[PlannedWave] = (),
) -> Receipt:
    """The receipt of ``state``'s generation; ``records`` maps device → its records (any rollout).

    ``planned`` (the generation's waves from :func:`fleetcd.planning.waves.plan_waves`) adds each
    gate's configured numbers. Raises ValueError when the generation has not finished or the
    release does not match it: both are the caller's bug, never repository content.
    """
    if state.phase not in FINISHED_PHASES:
        raise ValueError(f"rollout {state.name} is {state.phase.value}; a receipt needs one of {_phases()}")
    if (release.app, release.version) != (state.app, state.version):
        raise ValueError(f"release {release.app} {release.version} is not {state.app} {state.version}")
    gates = {wave.index: wave for wave in planned}
    ours = {device: _own(state, recs) for device, recs in records.items()}
    waves = tuple(_gate(wave, gates.get(wave.index)) for wave in state.waves)
    devices = _devices(state, ours)
    summary: dict[str, int] = {}
    for device in devices:
        summary[str(device.outcome)] = summary.get(str(device.outcome), 0) + 1
    return Receipt(
        rollout=state.name,
        generation=state.generation,
        generation_fingerprint=state.generation_fingerprint,
        commit=state.commit,
        outcome=state.phase,
        reason=state.reason,
        halt_policy=state.halt_policy,
        rolled_back=state.rolled_back_devices,
        release=ReleaseRef(
            app=release.app,
            version=release.version,
            path=release_path,
            sha256=state.release_sha256,
            artifacts=tuple(_artifact(artifact) for artifact in release.artifacts),
        ),
        previous_version=state.previous_version,
        approvals=tuple(sorted(approvals, key=lambda a: (a.fingerprint, a.commit))),
        waves=waves,
        devices=devices,
        skipped=tuple(SkippedDevice(device=d, reason=r) for d, r in sorted(state.skipped)),
        summary=dict(sorted(summary.items())),
        created_at=state.created_at,
        finished_at=finished_at,
    )


def _phases() -> str:
    return ", ".join(sorted(phase.value for phase in FINISHED_PHASES))


def _artifact(
    artifact: ContainerImage | AppTarball | ConfigPayload | ModelPayload | McuFirmware | FullImageAB,
) -> ArtifactDigest:
    if isinstance(artifact, ContainerImage):
        digest = artifact.image.rsplit("@", 1)[1]  # the pattern guarantees "...@sha256:<hex>"
        return ArtifactDigest(name=artifact.name, kind=artifact.kind, digest=digest, source=artifact.image)
    return ArtifactDigest(
        name=artifact.name,
        kind=artifact.kind,
        digest=f"sha256:{artifact.sha256}",
        size=artifact.size,
        source=artifact.url,
    )


def _own(state: RolloutState, records: Sequence[DeploymentRecord]) -> list[DeploymentRecord]:
    return [r for r in records if r.rollout == state.name and r.generation == state.generation]


def _gate(wave: WaveState, planned: PlannedWave | None) -> WaveGate:
    counts = wave.counts
    failures = counts.failed + counts.rolled_back + counts.timed_out
    reported_percent = round(counts.reported * 100.0 / counts.total, 2) if counts.total else 0.0
    gate = WaveGate(
        index=wave.index,
        name=wave.name,
        action=wave.action,
        phase=wave.phase.value,
        passed=wave.phase is WavePhase.PASSED,
        devices=len(wave.devices),
        counts=counts,
        reported=counts.reported,
        reported_percent=reported_percent,
        failures=failures,
        started_at=wave.started_at,
        gates_met_at=wave.gates_met_at,
        finished_at=wave.finished_at,
        reason=wave.reason,
    )
    if planned is None:
        return gate
    threshold = planned.failure_threshold
    return gate.model_copy(
        update={
            "failure_threshold": ThresholdRef(count=threshold.count, percent=threshold.percent),
            "min_reported_percent": planned.min_reported_percent,
            "soak_seconds": planned.soak_seconds,
            "manual_promotion": planned.manual_promotion,
        }
    )


def _latest(records: Sequence[DeploymentRecord]) -> DeploymentRecord | None:
    return max(records, key=lambda r: (r.created_at, r.id), default=None)


def _devices(state: RolloutState, ours: Mapping[str, list[DeploymentRecord]]) -> tuple[DeviceResult, ...]:
    wave_of = {device: wave.index for wave in state.waves for device in wave.devices}
    for device, recs in ours.items():
        if recs and device not in wave_of:
            wave_of[device] = recs[0].wave
    results = []
    for device in sorted(wave_of):
        recs = ours.get(device, [])
        deploy = _latest([r for r in recs if r.action is not Action.ROLLBACK])
        back = _latest([r for r in recs if r.action is Action.ROLLBACK])
        results.append(_device(state, device, wave_of[device], deploy, back))
    return tuple(results)


def _device(
    state: RolloutState,
    device: str,
    wave: int,
    deploy: DeploymentRecord | None,
    back: DeploymentRecord | None,
) -> DeviceResult:
    if deploy is None:
        return DeviceResult(
            device=device, wave=wave, outcome=NOT_DISPATCHED, version=state.version, running_version=None
        )
    rollback = None
    if back is not None:
        rollback = RollbackResult(
            deployment=back.id, version=back.version, outcome=outcome(back), status=back.status
        )
    return DeviceResult(
        device=device,
        wave=wave,
        outcome=outcome(deploy),
        version=deploy.version,
        running_version=_running(state, deploy, back),
        deployment=deploy.id,
        action=deploy.action,
        status=deploy.status,
        attempts=deploy.attempts,
        updated_at=deploy.updated_at,
        reason=deploy.reason,
        rollback=rollback,
    )


def _running(state: RolloutState, deploy: DeploymentRecord, back: DeploymentRecord | None) -> str | None:
    """The version the robot's reports say it ended on; None when they do not say."""
    if back is not None:
        return back.version if is_success(back) else None
    if is_success(deploy):
        return deploy.version
    if deploy.activity is Activity.ROLLED_BACK:
        return state.previous_version  # the agent went back to what it ran before
    return None
