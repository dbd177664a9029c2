"""Where a deployment that failed after its switch goes: the release's rollback policy, PURE.

:func:`agent.converge.machine.fail` and :func:`~agent.converge.machine.next_action` ask
:func:`rolling_back` for the entry to record; :mod:`agent.converge.apply` builds the
:class:`Fallback` from the release (``rollback:`` — ``RollbackPolicy``) and from what is on the
robot. The policy, chosen so a robot is never left without a running version:

* ``automatic: true`` (default) — roll back;
* ``automatic: false`` — mark the deployment failed and keep the new version, but *only while it
  runs*: a version that exited (or crash-looped) falls back anyway;
* ``target: previous`` (default) — back to the version that ran before;
* ``target: <version>`` — back to that version when its code and config are on this robot, else to
  the previous one; the reason says which. The choice is recorded in the journal entry
  (``rollback_target``) on entering ``rolling_back``, so a rollback resumed after a crash goes to the
  same version;
* ``checks`` — probes run after the rollback (:mod:`agent.converge.rollback`); a failure is
  reported, the robot stays where it rolled back to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agent.state.journal import REASON_MAX_CHARS, JournalEntry
from fleetcd.vocabulary import Activity


@dataclass(frozen=True)
class Fallback:
    """The release's rollback policy as it applies on this robot now (``RollbackPolicy``, reduced)."""

    automatic: bool = True
    target: str | None = None  # a version named by rollback.target; None: the previous version
    target_installed: bool = False  # code and config of ``target`` are on this robot


PREVIOUS = Fallback()  # the policy when the release is unknown (superseded, or no desired state)


def rollback_version(entry: JournalEntry) -> str | None:
    """The version a rollback of ``entry`` returns to (None: there is none, the app is stopped)."""
    return entry.rollback_target or entry.previous_version


def rolling_back(entry: JournalEntry, reason: str, now: datetime, fallback: Fallback) -> JournalEntry:
    """``entry`` in ROLLING_BACK, its target chosen by ``fallback`` and said in the reason."""
    previous, wanted = entry.previous_version, fallback.target
    back_to = f"the previous version {previous}" if previous else "no version (the app is stopped)"
    target, note = previous, None
    if wanted is not None and wanted != previous:
        if wanted == entry.version:
            note = f"rollback.target {wanted} is the failing version; back to {back_to}"
        elif fallback.target_installed:
            target, note = wanted, f"back to {wanted} (rollback.target)"
        else:
            note = f"rollback.target {wanted} is not installed here; back to {back_to}"
    rolling = entry.moved_to(Activity.ROLLING_BACK, now=now, reason=join(reason, note))
    if target == previous:
        return rolling
    return JournalEntry.model_validate({**rolling.model_dump(), "rollback_target": target})


def kept(reason: str, entry: JournalEntry) -> str:
    """The reason of a failed deployment whose new version keeps running (automatic off)."""
    return join(reason, f"rollback.automatic is off: {entry.version} keeps running")


def join(*parts: str | None) -> str:
    """Reasons joined with '; ', clipped to what a journal entry holds."""
    text = "; ".join(p for p in parts if p)
    return text if len(text) <= REASON_MAX_CHARS else text[: REASON_MAX_CHARS - 1] + "…"
