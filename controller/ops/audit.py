"""``fleetcd audit verify``: fetch the state branch and check the audit log's hash chain.

The full check reads every day file. ``--since-anchor`` (:mod:`controller.audit.since`) reads only
the day files from the head this machine last verified on, and compares the older ones by blob id
from the tree listing; the head it verified is kept in the mirror (a cache: without it the check
is a full one). Both also check that the log reaches the head ``state.json`` records.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from controller.audit.chain import AUDIT_DIR, ChainReport
from controller.audit.since import VerifiedAnchor, verify_since
from controller.reconcile.idle import audit_anchor
from controller.reconcile.source import Source, fetch_state, open_mirror
from controller.state.layout import META_FILE
from controller.state.model import ControllerMeta
from fleetcd.git.objects import read_blob
from fleetcd.git.trees import list_blobs

VERIFIED_FILE = "fleetcd-audit-verified.json"  # in the mirror: the head last verified here


@dataclass(frozen=True)
class AuditVerdict:
    report: ChainReport
    since_seq: int | None  # the head an incremental check started from (None: full check)


def verify_audit(source: Source, *, since_anchor: bool = False) -> AuditVerdict:
    """Verify the log on the remote's state branch; raises AuditChainBroken at the first bad link."""
    repo = open_mirror(source)
    head = fetch_state(repo, source)
    if head is None:
        return AuditVerdict(ChainReport(lines=0, head_hash="0" * 64, last_seq=0, files=0), None)
    raw = read_blob(repo, head, META_FILE)
    meta = ControllerMeta.model_validate_json(raw) if raw is not None else ControllerMeta()
    listing = list_blobs(repo, head, AUDIT_DIR)
    since = _recalled(source.mirror) if since_anchor else None

    def read(paths: list[str]) -> dict[str, bytes]:
        return {path: read_blob(repo, head, path) or b"" for path in paths}

    report, verified = verify_since(listing, read, since, anchor=audit_anchor(meta))
    _remember(source.mirror, verified)
    return AuditVerdict(report, since.seq if since is not None and since.file is not None else None)


def _recalled(mirror: Path) -> VerifiedAnchor | None:
    try:
        return VerifiedAnchor.model_validate_json((mirror / VERIFIED_FILE).read_bytes())
    except (OSError, ValidationError):
        return None


def _remember(mirror: Path, verified: VerifiedAnchor) -> None:
    with tempfile.NamedTemporaryFile(dir=mirror, prefix=".audit-", delete=False) as tmp:
        tmp.write(verified.model_dump_json().encode())
    Path(tmp.name).replace(mirror / VERIFIED_FILE)
