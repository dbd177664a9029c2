"""The rollout engine's entry point: one rollout, one reconcile tick, decisions out (pure).

The reconcile loop's *plan* step calls :func:`advance` once per rollout with everything read from
main and the state branch and the ``now`` of this reconcile; it writes the returned state, records
and audit events in its *write* step. Order within a tick:

1. a new generation gets a fresh state (:func:`controller.engine.lifecycle.create`);
2. retired robots' open records are archived, wave membership follows the plan, deadlines are
   enforced, then ``aborted``/``paused`` and
   ``not_before`` set the phase (:mod:`controller.engine.lifecycle`);
3. waves are gated, dispatched, halted and rolled back (:mod:`controller.engine.progress`).

Idempotent by construction: the same input gives the same output, and the output fed back at
the same ``now`` gives no new records and no new events. ``updated_at`` moves only when the state
changed, so an idle fleet does not rewrite its rollout files on every tick.
No I/O, no clock, no gpg, no git.
"""

from __future__ import annotations

from collections.abc import Iterable

from controller.engine import lifecycle, progress
from controller.engine.inputs import EngineInput, EngineOutput
from controller.engine.journal import Journal
from controller.engine.ledger import Ledger, LedgerMemo
from controller.state.model import RolloutPhase


def advance(
    inp: EngineInput, *, memo: LedgerMemo | None = None, changed: Iterable[str] | None = None
) -> EngineOutput:
    """Move one rollout forward to ``inp.now``: see the module docstring. ``memo``: the rollout's
    ledger index as the last tick left it, patched for the robots ``changed`` names (those whose
    device file is not the very object the last tick's ``inp.device_files`` held), and kept again."""
    ledger = Ledger(
        inp.device_files,
        inp.rollout.name,
        inp.generation.number,
        inp.release_sha256,
        inp.configs,
        memo=memo,
        changed=changed,
    )
    journal = Journal(inp.rollout.name, inp.commit, inp.generation.number, inp.now)
    before = inp.state
    state = before
    if state is None or state.generation != inp.generation.number:
        state = lifecycle.create(inp, ledger, journal)
        before = None
    lifecycle.retire_decommissioned(inp, ledger)
    state = lifecycle.follow_plan(inp, state, ledger)
    lifecycle.enforce_deadlines(inp, ledger)
    state = lifecycle.apply_switches(inp, state, ledger, journal)
    state = progress.run(inp, state, ledger, journal)
    if inp.rollout.aborted and state.phase is RolloutPhase.HALTED:
        # An abort waits for a rollback in progress; the tick that finishes it applies the abort
        # too, or the same input fed back would decide more (see the idempotency note above).
        state = lifecycle.apply_switches(inp, state, ledger, journal)
        state = progress.run(inp, state, ledger, journal)  # counts after what the abort retired
    if before is not None and state != before:
        state = state.model_copy(update={"updated_at": max(before.updated_at, inp.now)})
    records = ledger.changes()
    ledger.settle()
    return EngineOutput(state=state, records=records, events=tuple(journal.events))
