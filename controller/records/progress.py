"""A robot's live progress beside its records: which report's progress still holds, and its words.

Ingest (:mod:`controller.ingest.reports`) keeps the ``progress`` of a robot's latest report on its
:class:`~controller.records.model.DeviceState`, and only when it describes one of the robot's own
deployments in the phase the same report claims for it; a later report without one clears it.
Readers (the status pages, ``get devices``) show it through :func:`live_progress`, which checks
again against the record as it stands now: a deployment that has since settled, or moved to another
phase, never shows an older report's numbers. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.records.model import DeploymentRecord, DeviceState, is_terminal
from fleetcd.reports import Progress, StatusReport
from fleetcd.vocabulary import Activity

_UNITS = (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def accepted_progress(
    report: StatusReport, records: Mapping[str, DeploymentRecord], rejected: set[str]
) -> Progress | None:
    """``report``'s progress when it is about a deployment of this robot that the report itself
    claims to be in that phase (and whose claim was not refused); None otherwise."""
    progress = report.progress
    if progress is None or progress.deployment_id in rejected:
        return None
    claims = [d for d in report.deployments if d.deployment_id == progress.deployment_id]
    record = records.get(progress.deployment_id)
    if len(claims) != 1 or record is None or claims[0].activity is not progress.phase:
        return None
    return progress if live_progress(progress, record) is not None else None


def live_progress(progress: Progress | None, record: DeploymentRecord | None) -> Progress | None:
    """``progress`` if ``record`` is its deployment and still unsettled, in that phase (a step
    being retried after an error included: its new attempt is what the numbers count)."""
    if progress is None or record is None or record.id != progress.deployment_id:
        return None
    if is_terminal(record) or record.activity is not progress.phase:
        return None
    return progress


def device_progress(state: DeviceState, record: DeploymentRecord | None) -> str | None:
    """The words for ``state``'s progress on ``record`` (:func:`progress_text`), or None."""
    live = live_progress(state.progress, record)
    return None if live is None else progress_text(live)


def progress_text(progress: Progress) -> str:
    """``downloading 41 % (12.3/30.0 MiB)`` or ``watching health, 85 s left``."""
    if progress.phase is Activity.WATCHING:
        return f"watching health, {progress.seconds_left} s left"
    done, total = progress.done_bytes or 0, progress.total_bytes or 0
    percent = done * 100 // total if total else 0  # floor: 100 % only once every byte is there
    return f"downloading {percent} % ({_amount(done, total)})"


def _amount(done: int, total: int) -> str:
    for unit, size in _UNITS:
        if total >= size:
            return f"{done / size:.1f}/{total / size:.1f} {unit}"
    return f"{done}/{total} B"
