"""The release's migrations, run in converge state *applying* after the pre-flight steps and the
install beside the running version, before the switch; undone when the deployment fails or rolls
back. The ledger (:mod:`agent.state.migrations`) is written before and after every command.

Rules (docs/agent.md "Migrations"):

* **ordered, once per robot**: the release's ``migrations`` run in their order; a name this robot
  already applied (an earlier deployment that committed) is skipped;
* **a failed migration** (non-zero exit, timeout, refused by the allowlist) fails the deployment:
  the rollbacks of this deployment's migrations that started — the failed one included, it may have
  done part of its work — run in reverse order, then the old version keeps running;
* **a rollback after the switch** (failed health watch, superseded, gave up after ``max_trials``)
  runs the same reverse rollbacks first, before the config and code go back
  (:mod:`agent.converge.rollback`);
* **a crash mid-migration** (the ledger still says ``running`` when *applying* is redone): that
  migration's rollback runs, then the migrations go on from it (it runs again). A migration without
  ``rollback`` is irreversible: it stays applied when its deployment rolls back, and a run of it cut
  short is simply run again, so it must be idempotent;
* **abandoned work**: runs of another deployment that neither committed nor were undone (it was
  dropped before its switch) are undone before this deployment's migrations start;
* a deployment that commits marks its runs committed: a later deployment's rollback never undoes
  them (a ``fleetcd rollback`` to an older release leaves newer migrations applied — write them
  expand/contract, so both versions work on the migrated data).

Every rollback command is idempotent here as well: a rollback redone after a kill -9 reruns the
commands of runs not yet recorded ``rolled_back``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from agent.converge.preflight import run_command
from agent.errors import HookFailed
from agent.state.migrations import UNDONE, Ledger, MigrationRun
from fleetcd.models.release import Release
from fleetcd.vocabulary import MigrationState


def migrate(
    ledger: Ledger,
    release: Release,
    deployment_id: str,
    *,
    allowlist: Sequence[str],
    now: Callable[[], datetime],
) -> None:
    """Run ``release``'s migrations for ``deployment_id`` (see the module docstring)."""
    book = ledger.load()
    for other in book.open_elsewhere(deployment_id):
        undo(ledger, other, allowlist=allowlist, now=now)
    for run in ledger.load().of(deployment_id):
        if (
            run.state is MigrationState.RUNNING and run.rollback is not None
        ):  # cut short by a crash: undo, redo
            _undo_one(ledger, run, allowlist=allowlist, now=now)
    for step in release.migrations:
        book = ledger.load()
        if step.name in book.applied():
            continue
        running = MigrationRun(
            name=step.name,
            version=str(release.version),
            deployment_id=deployment_id,
            rollback=None if step.rollback is None else list(step.rollback),
            timeout_seconds=step.timeout_seconds,
            state=MigrationState.RUNNING,
            at=now(),
        )
        ledger.save(book.with_run(running))
        try:
            run_command(f"migration {step.name}", step.exec, step.timeout_seconds, allowlist=allowlist)
        except HookFailed as failed:
            ledger.save(
                ledger.load().with_run(
                    running.model_copy(update={"state": MigrationState.FAILED, "at": now()})
                )
            )
            try:
                undo(ledger, deployment_id, allowlist=allowlist, now=now)
            except HookFailed as also:
                raise HookFailed(failed.hook, f"{failed.detail}; and undoing: {also}") from failed
            raise
        ledger.save(
            ledger.load().with_run(running.model_copy(update={"state": MigrationState.APPLIED, "at": now()}))
        )


def undo(
    ledger: Ledger, deployment_id: str, *, allowlist: Sequence[str], now: Callable[[], datetime]
) -> None:
    """Run the rollbacks of ``deployment_id``'s started migrations, newest first; HookFailed stops it."""
    for run in reversed(ledger.load().of(deployment_id)):
        if run.committed or run.state in UNDONE or run.rollback is None:
            continue  # kept: committed, already undone, or irreversible
        _undo_one(ledger, run, allowlist=allowlist, now=now)


def commit(ledger: Ledger, deployment_id: str) -> None:
    """The deployment is healthy and committed: its migrations are never undone afterwards."""
    book = ledger.load()
    if any(r.deployment_id == deployment_id and not r.committed for r in book.runs):
        ledger.save(book.committed(deployment_id))


def _undo_one(
    ledger: Ledger, run: MigrationRun, *, allowlist: Sequence[str], now: Callable[[], datetime]
) -> None:
    assert run.rollback is not None
    run_command(f"migration {run.name} rollback", run.rollback, run.timeout_seconds, allowlist=allowlist)
    ledger.save(
        ledger.load().with_run(run.model_copy(update={"state": MigrationState.ROLLED_BACK, "at": now()}))
    )
