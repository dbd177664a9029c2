"""The robot's wire format, in bytes: a desired-state commit's five files and a status-report commit.

Shared by everything that speaks git as a robot: the agent (:mod:`agent.sync.desired`,
:mod:`agent.report.push`, through the ``git`` CLI) and the controller's fleet simulator
(:mod:`controller.sim.wire`, through :mod:`fleetcd.git`). Pure data and bytes only: no git, no
I/O and no pygit2 (the agent must not import it), so each side keeps its own transport and both
read and write exactly the same things.

* Reading desired state: :data:`DESIRED_FILE_CAPS` is each file's cap, in the order the verifier
  reads them; :func:`check_desired_file` refuses a missing or oversized file from its object
  header, before a byte is read; :func:`desired_files` assembles what was read.
* Writing a report: :func:`status_commit` is the one file, message, author and date of the commit
  that carries a :class:`~fleetcd.reports.StatusReport` (fixed, so the same report always makes
  the same commit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from fleetcd.compat import UTC
from fleetcd.desired import BUNDLE_FILE, PROOF_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE, BundleRejected
from fleetcd.desired.bundle import (
    MAX_BUNDLE_BYTES,
    MAX_PROOF_BYTES,
    MAX_ROOT_BYTES,
    MAX_ROOT_SIGNATURE_BYTES,
    canonical_bytes,
)
from fleetcd.desired.chain import MAX_TRUST_BYTES, TRUST_FILE
from fleetcd.reasons import Reason
from fleetcd.reports import STATUS_FILE, StatusReport

# Each file's cap, in the order the verifier reads them (fleetcd.desired.bundle's MAX_*_BYTES).
DESIRED_FILE_CAPS: tuple[tuple[str, int], ...] = (
    (BUNDLE_FILE, MAX_BUNDLE_BYTES),
    (ROOT_FILE, MAX_ROOT_BYTES),
    (ROOT_SIGNATURE_FILE, MAX_ROOT_SIGNATURE_BYTES),
    (PROOF_FILE, MAX_PROOF_BYTES),
    (TRUST_FILE, MAX_TRUST_BYTES),
)
DESIRED_FILE_NAMES: tuple[str, ...] = tuple(name for name, _ in DESIRED_FILE_CAPS)
REPORT_AUTHOR = "fleetcd-agent"  # a status commit's author is "<sender> <device>"


@dataclass(frozen=True)
class DesiredFiles:
    """The raw, still unverified files of one desired-state commit."""

    commit: str
    bundle: bytes
    root: bytes
    root_signature: bytes
    proof: bytes
    trust: bytes  # trust.json: the trust-root chain and public keys (fleetcd.desired.chain)
    # Set by a reader that found both names of the desired state and they differ (the agent's
    # agent.sync.layout.LayoutConflict): news to report, not part of the files.
    conflict: Exception | None = field(default=None, compare=False)


def check_desired_file(commit: str, name: str, size: int | None, cap: int) -> None:
    """Refuse file ``name`` of desired-state ``commit`` from its header: missing (``size`` None) or
    over ``cap`` bytes is :class:`~fleetcd.desired.BundleRejected` naming it."""
    if size is None:
        message = f"the desired-state commit {commit} holds no {name}"
        raise BundleRejected(Reason.BUNDLE_INVALID, message, file=name)
    if size > cap:
        message = f"{size} bytes in commit {commit}; at most {cap}"
        raise BundleRejected(Reason.TOO_LARGE, message, file=name)


def desired_files(commit: str, data: Mapping[str, bytes]) -> DesiredFiles:
    """The files of ``commit`` from what was read, by file name."""
    return DesiredFiles(
        commit=commit,
        bundle=data[BUNDLE_FILE],
        root=data[ROOT_FILE],
        root_signature=data[ROOT_SIGNATURE_FILE],
        proof=data[PROOF_FILE],
        trust=data[TRUST_FILE],
    )


@dataclass(frozen=True)
class StatusCommit:
    """Everything a status-report commit holds, but its parent: one file, message, author, date."""

    path: str
    data: bytes
    message: str
    author_name: str
    author_email: str
    when: datetime


def status_commit(report: StatusReport, *, sender: str = REPORT_AUTHOR) -> StatusCommit:
    """The commit that carries ``report`` (``status.json``, canonical bytes)."""
    when = report.reported_at if report.reported_at.tzinfo else report.reported_at.replace(tzinfo=UTC)
    return StatusCommit(
        path=STATUS_FILE,
        data=canonical_bytes(report),
        message=f"status of {report.device}: seq {report.seq}",
        author_name=f"{sender} {report.device}",
        author_email=f"{report.device}@fleetcd.invalid",
        when=when,
    )
