"""Automatic rollback after a halt: who got the new version, and their rollback records (pure).

When a wave crosses its failure threshold, the rollout's ``on_halt`` says which waves go back
(:func:`in_scope`): ``rollback_all`` every wave that ran up to the failed one (everyone returns to
stable), ``rollback_wave`` the failed wave only, ``pause`` none. Provided the previous release is
known (and not withdrawn), every robot of those waves that *may run* the new version gets a
``rollback`` deployment of the previous release (:func:`needs_rollback`):

* it switched — deployed, or failed after it began applying it;
* its bundle told it to run the release and it has not said a word since (queued, or staged with
  the switch ordered): its report may simply not be in yet, so it gets the rollback at once. For
  a robot still on the previous release that deployment is a no-op: the agent adopts a desired
  version it already runs. Its own deployment is archived, open to a late report;
* it was told to run the release and timed out: silence says nothing about what it runs.

Robots whose agent already rolled itself back, robots that failed before switching, blue/green
robots that only staged, and robots whose change was config only (they ran this release before:
:func:`_config_only`) need none. A robot still working when the wave failed is judged when its
deployment ends (or times out), so the rollback set can grow over several ticks.

A rollback restores what the robot ran: the previous release *with the config it ran with* — the
config files, merged sha256 and evidence commit of the robot's newest deployment of that release by
this rollout (:func:`_what_it_ran`). Without one (the robot got it elsewhere, or before records
carried config) the rollback names the commit that put the previous release out and no config.

Rollback ids are deterministic like every deployment's — (rollout, generation, device, previous
release digest, config digest) — so replays create nothing twice. The superseded deployment is archived, which
keeps its outcome for statistics. Rollbacks ignore windows and the rate limit: a release that
failed its gate is worse than a disruption or a busy registry. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.engine.dispatch import unstarted
from controller.engine.inputs import EngineInput, device_timeout
from controller.engine.ledger import Ledger
from controller.records.model import (
    Action,
    DeploymentRecord,
    Outcome,
    TargetStatus,
    is_success,
    is_terminal,
    outcome,
)
from controller.records.transitions import archive, new_deployment
from fleetcd.models.rollout import HaltPolicy
from fleetcd.planning.waves import PlannedWave
from fleetcd.reasons import RecordReason
from fleetcd.vocabulary import Activity

# An activity at which the robot had (begun to) run the new version.
_SWITCHED = frozenset({Activity.APPLYING, Activity.WATCHING, Activity.DEPLOYED, Activity.DRIFTED})
# The event transitions.set_target appends at the blue/green switch: only what follows it ran live.
_SWITCH_MARK = f"target {TargetStatus.DEPLOYED.value}"


@dataclass(frozen=True)
class Previous:
    version: str
    release_sha256: str


def switched(record: DeploymentRecord) -> bool:
    """True when the robot ran (or began applying) the new version and did not restore the old one."""
    if record.activity is Activity.ROLLED_BACK:
        return False
    if outcome(record) is Outcome.SUCCEEDED:
        return True
    events = record.events
    if record.action is Action.STAGE:
        marks = [i for i, event in enumerate(events) if event.message == _SWITCH_MARK]
        if not marks:
            return False
        events = events[marks[0] + 1 :]
    return any(event.activity in _SWITCHED for event in events)


def needs_rollback(record: DeploymentRecord, delivered: bool) -> bool:
    """True when the robot may run ``record``'s release; ``delivered``: a bundle told it to."""
    if record.activity is Activity.ROLLED_BACK:
        return False  # the agent restored the previous release itself
    if not is_terminal(record):
        return delivered and unstarted(record)
    return switched(record) or (delivered and record.reason == RecordReason.TIMED_OUT.value)


def in_scope(policy: HaltPolicy, wave: int, failed: int) -> bool:
    """True when wave index ``wave`` is rolled back after wave ``failed`` crossed its threshold."""
    if policy is HaltPolicy.ROLLBACK_ALL:
        return wave <= failed  # waves after the failed one never started
    return policy is HaltPolicy.ROLLBACK_WAVE and wave == failed


def roll_back(
    inp: EngineInput, ledger: Ledger, wave: PlannedWave, previous: Previous, done: frozenset[str]
) -> list[DeploymentRecord]:
    """Create the rollback records now due for ``wave``; ``done`` = robots already rolled back."""
    created: list[DeploymentRecord] = []
    for device in wave.devices:
        deployed = ledger.find(device, inp.release_sha256)
        if deployed is None or not needs_rollback(deployed, ledger.delivered(deployed)):
            continue
        if device in done or ledger.find(device, previous.release_sha256) is not None:
            continue
        if _config_only(ledger, device):
            continue
        ran = _what_it_ran(ledger, device, previous)
        rollback = new_deployment(
            rollout=inp.rollout.name,
            generation=ledger.generation,
            device=device,
            app=inp.rollout.app,
            version=previous.version,
            release_sha256=previous.release_sha256,
            wave=wave.index,
            action=Action.ROLLBACK,
            target_status=TargetStatus.DEPLOYED,
            at=inp.now,
            deadline_at=inp.now + device_timeout(inp),
            config_sha256=ran.config_sha256 if ran is not None else None,
            config_files=ran.config_files if ran is not None else (),
            commit=_evidence_commit(inp, ran, previous),
        )
        ledger.put(rollback)
        ledger.put(archive(deployed, inp.now, RecordReason.SUPERSEDED))
        created.append(rollback)
    return created


def _config_only(ledger: Ledger, device: str) -> bool:
    """True when the robot ran this generation's release before it (only its config changed): the
    previous *release* is not what it ran. Its agent restored its previous config itself when the
    health watch failed; one that passed keeps the new config until the operator reverts it."""
    earlier = ledger.earlier(device)
    return earlier is not None and earlier.release_sha256 == ledger.release_sha256 and is_success(earlier)


def _what_it_ran(ledger: Ledger, device: str, previous: Previous) -> DeploymentRecord | None:
    """The robot's newest deployment of the previous release by this rollout that knows its commit."""
    ran = [
        r
        for r in ledger.ours()
        if r.device == device and r.release_sha256 == previous.release_sha256 and r.commit is not None
    ]
    return max(ran, key=lambda r: (r.generation, r.created_at, r.id), default=None)


def _evidence_commit(inp: EngineInput, ran: DeploymentRecord | None, previous: Previous) -> str | None:
    if ran is not None:
        return ran.commit
    return inp.state.release_commits.get(previous.release_sha256) if inp.state is not None else None


def _devices(waves: Sequence[PlannedWave]) -> list[str]:
    return sorted({device for wave in waves for device in wave.devices})


def rollback_finished(
    inp: EngineInput, ledger: Ledger, waves: Sequence[PlannedWave], previous: Previous
) -> bool:
    """True once no deployment of the waves rolled back, new or rollback, is still in flight."""
    for device in _devices(waves):
        for digest in (inp.release_sha256, previous.release_sha256):
            record = ledger.find(device, digest)
            if record is not None and not is_terminal(record):
                return False
    return True


def rollback_counts(
    inp: EngineInput, ledger: Ledger, waves: Sequence[PlannedWave], previous: Previous
) -> dict[str, int]:
    """How the rollbacks ended: robots back on the previous release, and the rest."""
    tally: dict[str, int] = {"rolled_back": 0, "rollback_failed": 0}
    for device in _devices(waves):
        record = ledger.find(device, previous.release_sha256)
        if record is not None and record.action is Action.ROLLBACK:
            tally["rolled_back" if outcome(record) is Outcome.SUCCEEDED else "rollback_failed"] += 1
    return tally
