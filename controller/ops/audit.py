"""``fleetcd audit verify``: fetch the state branch and check the audit log's hash chain.

The full check reads every day file. ``--since-anchor`` (:mod:`controller.audit.since`) reads only
the day files from the head this machine last verified on, and compares the older ones by blob id
from the tree listing; the head it verified is kept in the mirror (a cache: without it the check
is a full one). Both also check that the log reaches the head ``state.json`` records, and the
signed heads (:mod:`controller.audit.heads`) against the controller keys of main's trust root: the
full check every head, ``--since-anchor`` only the heads above the one it verified before.

Which keys count: a controller key of *any* version of the trust-root chain on main that verifies
(``trust/root/<N>.yaml`` from version 1, over ``keys/*.asc``). A rotated-out controller key still
vouches for the heads it signed while it was current; the price is that it could also sign a
forged head later, so a *compromised* controller key is handled by rewriting history as an
incident (docs/security.md), not by rotation alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from controller.audit.chain import ChainReport
from controller.audit.heads import HEADS_DIR, HeadReport, check_heads, head_seqs, is_newer_head_file
from controller.audit.lines import AUDIT_DIR
from controller.audit.since import VerifiedAnchor, verify_since
from controller.reconcile.idle import audit_anchor
from controller.reconcile.source import Source, fetch_all, open_mirror
from controller.state.layout import META_FILE
from controller.state.model import ControllerMeta
from fleetcd.errors import SetupError
from fleetcd.git.mirror import replace_file
from fleetcd.git.objects import read_blob
from fleetcd.git.repo import Oid, Repository
from fleetcd.git.trees import list_blobs, read_files
from fleetcd.layout import TRUST_ROOT_DIR

VERIFIED_FILE = "fleetcd-audit-verified.json"  # in the mirror: the head last verified here


@dataclass(frozen=True)
class AuditVerdict:
    report: ChainReport
    since_seq: int | None  # the head an incremental check started from (None: full check)
    heads: HeadReport  # the newest signed head and how many heads this check read


def verify_audit(source: Source, *, since_anchor: bool = False) -> AuditVerdict:
    """Verify the log on the remote's state branch and its signed heads; raises AuditChainBroken at
    the first bad link or head."""
    repo = open_mirror(source)
    fetched = fetch_all(repo, source)
    head = fetched.state
    if head is None:
        empty = ChainReport(lines=0, head_hash="0" * 64, last_seq=0, files=0)
        return AuditVerdict(empty, None, HeadReport(signed_seq=0, checked=0))
    raw = read_blob(repo, head, META_FILE)
    meta = ControllerMeta.model_validate_json(raw) if raw is not None else ControllerMeta()
    listing = list_blobs(repo, head, AUDIT_DIR)
    heads_listing = list_blobs(repo, head, HEADS_DIR)  # names only
    since = _recalled(source.mirror) if since_anchor else None
    after = since.seq if since is not None and since.file is not None else 0

    def read(paths: list[str]) -> dict[str, bytes]:
        return {path: read_blob(repo, head, path) or b"" for path in paths}

    marks = head_seqs(heads_listing, after=after)
    report, verified = verify_since(listing, read, since, anchor=audit_anchor(meta), marks=marks)
    heads = read([p for p in sorted(heads_listing) if is_newer_head_file(p, after)])
    end = (report.last_seq, report.head_hash)
    if heads:
        from fleetcd.trust.gpg import Keyring  # gpg only when there is a head to check

        keys, controller = controller_keys(repo, fetched.main)
        with Keyring.from_armored(keys) as keyring:

            def signed(document: bytes, signature: bytes) -> str | None:
                result = keyring.verify_detached(document, signature)
                if not result.valid:
                    return result.detail
                if result.fingerprint not in controller:
                    return f"signed by {result.fingerprint}, not a controller key of any trust-root version"
                return None

            checked = check_heads(heads, report.marks, end, signed, after=after)
    else:
        checked = check_heads({}, report.marks, end, lambda d, s: "no key", after=after)
    _remember(source.mirror, verified)
    return AuditVerdict(report, after or None, checked)


def controller_keys(repo: Repository, main: Oid) -> tuple[dict[str, bytes], frozenset[str]]:
    """``keys/*.asc`` of main and the controller fingerprints of every trust-root version whose
    chain verifies from version 1 (a rotated-out controller key still counts: module docstring)."""
    from fleetcd.loading.fleetspec import load_spec
    from fleetcd.trust.gpg import Keyring
    from fleetcd.trust.rootchain import TrustChainRejected, TrustedRoot, verify_next, verify_self_signed
    from fleetcd.validation.trust import root_version

    spec, _ = load_spec(read_files(repo, main, (f"{TRUST_ROOT_DIR}/", "keys/")))
    found: set[str] = set()
    with Keyring.from_armored(spec.keys) as keyring:
        trusted: TrustedRoot | None = None
        for version in sorted(spec.trust_roots):
            candidate = root_version(spec.trust_roots[version])
            try:
                if trusted is None:
                    trusted = verify_self_signed(candidate, keyring)
                else:
                    trusted = verify_next(trusted, candidate, keyring, schema=True)
            except TrustChainRejected:
                break  # nothing after a broken link counts
            found.update(key.fingerprint for key in trusted.model.controller)
    if not found:
        raise SetupError(
            f"main {str(main)[:12]}: no verified trust root, so no controller key to check audit heads with"
        )
    return dict(spec.keys), frozenset(found)


def _recalled(mirror: Path) -> VerifiedAnchor | None:
    try:
        return VerifiedAnchor.model_validate_json((mirror / VERIFIED_FILE).read_bytes())
    except (OSError, ValidationError):
        return None


def _remember(mirror: Path, verified: VerifiedAnchor) -> None:
    replace_file(mirror, VERIFIED_FILE, verified.model_dump_json().encode())
