"""Dispatch: which due robots get their deployment record on this tick (pure).

A robot is *due* when it is in the running wave or an earlier one (robots that joined a cohort
after its wave passed catch up). It gets its record only when, at ``now``:

* it is inside one of its maintenance windows (its own and its cohorts', in its own time zone)
  when ``schedule.respect_maintenance_windows`` is on and it has any windows at all;
* the download rate limit allows one more: at most N new downloads per rolling minute, counted
  from the ``created_at`` of this generation's records, so the count survives restarts;
* it has no record of this generation yet (ids are deterministic: one-time use) and was not
  rolled back in this generation — or its record delivers another config than the one it should
  run now (it joined a cohort with its own config file): a deployment is a release *plus* its
  config, so that is a new deployment, and the old one, if unfinished, is superseded. A robot
  carrying an earlier generation's deployment of the same release and config gets none
  (:meth:`~controller.engine.ledger.Ledger.carried`);
* it runs what the release ``requires``, and no app it runs requires this app outside the new
  release (:mod:`controller.engine.requires`; not checked for a blue/green *stage*, which switches
  nothing).

The blue/green switch (staged → deployed) waits for a window too, since that is when the robot's
service changes, but is not a download and so not rate limited. ``not_before``, pause and abort
are rollout phases, decided before dispatch is called.

The way back: when a halt or an abort stops the rollout, :func:`cancel_reason` says which records
it may retire. A robot that has not said it started is not proof that it did not: once a bundle
told it to run the release (:meth:`~controller.engine.ledger.Ledger.delivered`) it may be
installing it right now, its report not in yet. Such records are retired as
``aborted_after_delivery`` (a late report still fills in their outcome), or, in a wave that
is rolled back, left to :mod:`controller.engine.rollback`. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from controller.engine.inputs import (
    RATE_WINDOW,
    EngineInput,
    device_timeout,
    rate_per_minute,
    stage_timeout,
    windows_of,
    zone_of,
)
from controller.engine.ledger import Ledger
from controller.engine.requires import requirement_hold
from controller.engine.windows import window_open
from controller.records.model import Action, DeploymentRecord, TargetStatus, is_terminal
from controller.records.transitions import archive, new_deployment, set_target
from fleetcd.planning.waves import PlannedWave, WaveAction
from fleetcd.reasons import HoldReason, RecordReason
from fleetcd.vocabulary import Activity

Holds = dict[int, dict[str, HoldReason]]  # wave index -> robot held in it -> why


def _downloads_in_last_minute(ledger: Ledger, now: datetime) -> int:
    since = now - RATE_WINDOW
    return sum(
        1 for r in ledger.current() if r.action in (Action.DEPLOY, Action.STAGE) and r.created_at > since
    )


def _may_change_now(inp: EngineInput, device: str) -> bool:
    if not inp.rollout.schedule.respect_maintenance_windows:
        return True
    return window_open(windows_of(inp, device), inp.now, zone_of(inp, device))


def waiting_for_switch(record: DeploymentRecord) -> bool:
    return record.target_status is TargetStatus.STAGED and record.activity is Activity.STAGED


def unstarted(record: DeploymentRecord) -> bool:
    """The robot has not reported acting on its order: queued (or deferred), or staged with the
    blue/green switch ordered but not reported."""
    return record.activity is Activity.QUEUED or (
        record.activity is Activity.STAGED and record.target_status is TargetStatus.DEPLOYED
    )


def cancel_reason(ledger: Ledger, record: DeploymentRecord) -> RecordReason | None:
    """Why a halt or abort retires ``record`` now; None when it must finish first.

    Only what the robot has not started is retired: deployments in flight end (or time out) on
    their own. ``aborted`` means the robot was never told to run the release (not delivered, or a
    blue/green robot that only staged it); ``aborted_after_delivery`` that its bundle said so.
    """
    if record.action is Action.ROLLBACK or is_terminal(record):
        return None
    if waiting_for_switch(record) or (unstarted(record) and not ledger.delivered(record)):
        return RecordReason.ABORTED
    return RecordReason.ABORTED_AFTER_DELIVERY if unstarted(record) else None


def dispatch(inp: EngineInput, ledger: Ledger, due: Sequence[PlannedWave], excluded: frozenset[str]) -> Holds:
    """Create (or switch) the records due robots may get now; returns each held robot and why, per wave."""
    limit = rate_per_minute(inp)
    budget = None if limit is None else limit - _downloads_in_last_minute(ledger, inp.now)
    holds: Holds = {}
    placed: set[str] = set()
    for wave in due:
        for device in wave.devices:
            record = ledger.find(device, inp.release_sha256)
            if wave.action is WaveAction.SWITCH:
                if record is None or not waiting_for_switch(record):
                    continue
                if not _may_change_now(inp, device):
                    holds.setdefault(wave.index, {})[device] = HoldReason.MAINTENANCE_WINDOW
                    continue
                if (required := requirement_hold(inp, device)) is not None:
                    holds.setdefault(wave.index, {})[device] = required
                    continue
                deadline = inp.now + device_timeout(inp)
                ledger.put(set_target(record, TargetStatus.DEPLOYED, inp.now, deadline_at=deadline))
                continue
            if device in placed:
                continue  # dispatched by its first wave only
            placed.add(device)
            if device in excluded or (record is not None and not _config_changed(inp, record)):
                continue
            if not _may_change_now(inp, device):
                holds.setdefault(wave.index, {})[device] = HoldReason.MAINTENANCE_WINDOW
                continue
            required = None if wave.action is WaveAction.STAGE else requirement_hold(inp, device)
            if required is not None:
                holds.setdefault(wave.index, {})[device] = required
                continue
            if budget is not None and budget <= 0:
                holds.setdefault(wave.index, {})[device] = HoldReason.RATE_LIMIT
                continue
            if budget is not None:
                budget -= 1
            if record is not None and not is_terminal(record):
                ledger.put(archive(record, inp.now, RecordReason.SUPERSEDED))
            ledger.put(_new_record(inp, ledger, wave, device))
    return holds


def _config_changed(inp: EngineInput, record: DeploymentRecord) -> bool:
    """True when ``record`` (this generation's, or carried) delivers another config than the robot's
    now. Only records that know their config are judged: older ones are left as they are."""
    if record.generation != inp.generation.number or record.action is Action.ROLLBACK:
        return False
    return record.config_sha256 != inp.config_of(record.device).sha256 and record.commit is not None


def _new_record(inp: EngineInput, ledger: Ledger, wave: PlannedWave, device: str) -> DeploymentRecord:
    staging = wave.action is WaveAction.STAGE
    config = inp.config_of(device)
    return new_deployment(
        rollout=inp.rollout.name,
        generation=ledger.generation,
        device=device,
        app=inp.rollout.app,
        version=inp.rollout.release,
        release_sha256=inp.release_sha256,
        wave=wave.index,
        action=Action.STAGE if staging else Action.DEPLOY,
        target_status=TargetStatus.STAGED if staging else TargetStatus.DEPLOYED,
        at=inp.now,
        deadline_at=inp.now + (stage_timeout(inp) if staging else device_timeout(inp)),
        config_sha256=config.sha256,
        config_files=config.files,
        commit=inp.commit,
    )
