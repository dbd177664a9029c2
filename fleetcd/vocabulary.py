"""What a deployment is doing: one vocabulary for the agent's journal, the status report and records.

Shared core, pure values. :class:`Activity` is the one enum of the concept; each place that stores
it accepts a documented subset (a ``Literal`` of members, so mypy and the JSON Schemas keep the
exact list), and :class:`Status` is derived from it. The values are a public format — the journal on
a robot's disk, ``status.json`` on its status ref, the records and audit lines on the controller's
state branch — so they are stable snake_case strings: add new ones, never rename (a robot upgraded
mid-deployment reads its old journal; a controller reads old records).

==============  =======  ======  ======  =========================================================
activity        journal  report  record  meaning
==============  =======  ======  ======  =========================================================
idle            yes      —       —       the agent holds no deployment for this app
queued          —        yes     yes     the controller queued it; a robot says it only to defer
downloading     yes      yes     yes     fetching the artifact
verifying       yes      yes     yes     checking digests and signatures
applying        yes      yes     yes     installing (pre-switch: the old version still runs)
staged          yes      yes     yes     blue/green: installed beside the running one, waiting
switched        yes      —       —       the new version was started, not yet watched
watching        yes      yes     yes     the health watch runs
healthy         yes      —       —       the health watch passed (the journal's word for deployed)
deployed        —        yes     yes     running and healthy
rolling_back    yes      —       —       going back to the previous (or rollback.target) version
rolled_back     yes      yes     yes     the fallback version runs again
failed          yes      yes     yes     this deployment cannot succeed
drifted         —        yes     yes     deployed, then its config files were edited on the robot
removing        —        yes     yes     being uninstalled (its record is archived)
archived        —        yes     yes     retired
==============  =======  ======  ======  =========================================================

Two "roots", never to be confused: the *signed root* (``root.json``, :class:`fleetcd.desired.SignedRoot`)
is the controller's per-reconcile signature over a Merkle root of the bundles it writes; the *trust
root* (``trust/root/<N>.yaml``, :class:`fleetcd.models.TrustRoot`) is the versioned, root-key-signed
list of which keys the fleet trusts for what (docs/signing-and-approval.md). Code and messages say
"trust root" for the second, always.

The agent reports a journal state as an (activity, error) pair (``agent.converge.machine.reported``):
``idle`` → ``queued``; ``switched`` → ``watching``; ``healthy`` → ``deployed``; ``rolling_back`` →
``watching`` + ``retrying``; ``rolled_back`` and ``failed`` → themselves + ``failed``; a step held
by a closed robot-state gate → ``queued`` + ``retrying``; the others → themselves, with
``retrying`` while the step is retried after an error.
"""

from __future__ import annotations

from typing import Literal, get_args

from fleetcd.compat import StrEnum


class Activity(StrEnum):
    """Every step a deployment can be in, on the robot or as the controller records it (table above)."""

    IDLE = "idle"
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    APPLYING = "applying"
    STAGED = "staged"
    SWITCHED = "switched"
    WATCHING = "watching"
    HEALTHY = "healthy"
    DEPLOYED = "deployed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    DRIFTED = "drifted"
    REMOVING = "removing"
    ARCHIVED = "archived"


# The agent's converge journal (agent.state.journal): where one deployment stands on the robot.
JournalActivity = Literal[
    Activity.IDLE,
    Activity.DOWNLOADING,
    Activity.VERIFYING,
    Activity.APPLYING,
    Activity.STAGED,
    Activity.SWITCHED,
    Activity.WATCHING,
    Activity.HEALTHY,
    Activity.ROLLING_BACK,
    Activity.ROLLED_BACK,
    Activity.FAILED,
]

# The status report (fleetcd.reports) and the controller's deployment records (controller.records).
ReportedActivity = Literal[
    Activity.QUEUED,
    Activity.DOWNLOADING,
    Activity.VERIFYING,
    Activity.APPLYING,
    Activity.WATCHING,
    Activity.STAGED,
    Activity.DEPLOYED,
    Activity.ROLLED_BACK,
    Activity.FAILED,
    Activity.DRIFTED,
    Activity.REMOVING,
    Activity.ARCHIVED,
]

# The long steps a report's ``progress`` measures (fleetcd.reports.Progress): bytes of a download,
# seconds left in a health watch. Each is also the deployment's reported activity while it runs.
ProgressPhase = Literal[Activity.DOWNLOADING, Activity.WATCHING]

JOURNAL_ACTIVITIES: frozenset[Activity] = frozenset(get_args(JournalActivity))
REPORTED_ACTIVITIES: frozenset[Activity] = frozenset(get_args(ReportedActivity))


class ErrorStatus(StrEnum):
    """Beside the activity, in reports and records: is the step failing?"""

    NONE = "none"
    RETRYING = "retrying"  # a transient failure: the robot will try again
    FAILED = "failed"


# The status report's spelling of the same three values (a Literal keeps its JSON Schema a plain list).
ReportedError = Literal[ErrorStatus.NONE, ErrorStatus.RETRYING, ErrorStatus.FAILED]


class Status(StrEnum):
    """A record's merged status: its error when there is one, else its activity (every reported
    activity, plus ``retrying``; ``failed`` doubles as the error)."""

    QUEUED = "queued"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    APPLYING = "applying"
    WATCHING = "watching"
    STAGED = "staged"
    DEPLOYED = "deployed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    DRIFTED = "drifted"
    REMOVING = "removing"
    ARCHIVED = "archived"
    RETRYING = "retrying"


class MigrationState(StrEnum):
    """Where one release migration is on a robot: its ledger (agent.state.migrations) and its report."""

    RUNNING = "running"  # started; still this after a crash cut it short
    APPLIED = "applied"  # exited 0
    FAILED = "failed"  # did not exit 0 (its rollback, if any, then ran)
    ROLLED_BACK = "rolled_back"  # its rollback command exited 0


class DriftKind(StrEnum):
    """What runs on a robot differs from what its agent installed (``runtime_drift`` in the report)."""

    CURRENT_LINK = "current_link"  # tarball: ``current`` points at another release than the agent's
    IMAGE = "image"  # docker: the app's container runs another image than the deployment's digest, or is gone
    STARTED_OUTSIDE = "started_outside"  # a version of the app runs that the agent did not start


# Their spellings in the status report (a Literal of members: the report is parsed strictly from JSON).
ReportedMigrationState = Literal[
    MigrationState.RUNNING, MigrationState.APPLIED, MigrationState.FAILED, MigrationState.ROLLED_BACK
]
ReportedDriftKind = Literal[DriftKind.CURRENT_LINK, DriftKind.IMAGE, DriftKind.STARTED_OUTSIDE]


def merged_status(activity: ReportedActivity, error: ErrorStatus) -> Status:
    """The error wins when there is one; otherwise the activity."""
    if error is not ErrorStatus.NONE:
        return Status(error.value)
    return Status(activity.value)


__all__ = [
    "JOURNAL_ACTIVITIES",
    "REPORTED_ACTIVITIES",
    "Activity",
    "DriftKind",
    "ErrorStatus",
    "JournalActivity",
    "MigrationState",
    "ProgressPhase",
    "ReportedActivity",
    "ReportedDriftKind",
    "ReportedError",
    "ReportedMigrationState",
    "Status",
    "merged_status",
]
