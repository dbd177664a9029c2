"""Commit policy: may the controller act on main's new tip? (pure: no I/O, no clock).

Step 2 (verify) of a reconcile, before any file of the new tip is parsed. Inputs are a
:class:`CommitReader` (the real one is :class:`fleetcd.git.signatures.RepositoryCommits`), the last
processed commit from the state branch, the new tip, ``fleet.yaml``'s ``trust.commits`` and a
:class:`~fleetcd.trust.policy.Verifier` (a :class:`~fleetcd.trust.gpg.Keyring` of the fleet's
``keys/``).

Which ``fleet.yaml``: the policy and keys must come from the *last processed* commit's tree, which
was already accepted, never from the tip being judged (an unsigned tip could otherwise switch the
policy off, or list its own key). Only the very first reconcile, with nothing processed yet, takes
them from the tip itself. A legitimate key rotation is a commit signed by a key trusted before it.

Modes:

* ``off`` — any commit is accepted.
* ``head`` — the tip must carry a valid signature by a key in ``trust.commits.trusted``.
* ``strict`` — every commit since the last processed one (exclusive), merged branches included,
  must. On the first reconcile only the tip is checked: its signature covers the whole tree, and
  history from before the policy was switched on is usually unsigned.

Whatever the mode, a tip that no longer descends from the last processed commit raises
:class:`~controller.errors.HistoryRewritten`: the loop halts and audits instead of guessing what a
rewrite meant to undo. A forge that merges pull requests in its web UI signs with its own key;
list that key in ``trusted`` explicitly to accept its merges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from controller.errors import HistoryRewritten
from fleetcd.errors import Diagnostic
from fleetcd.models.fleet import CommitPolicy, KeyRef
from fleetcd.reasons import Reason
from fleetcd.trust.policy import Verifier

MAIN_REF = "refs/heads/main"
POLICY_FIELD = "trust.commits"


class CommitReader(Protocol):
    """What the policy needs to know about commits; ids are 40-hex strings."""

    def signature(self, commit: str) -> tuple[bytes, bytes] | None: ...  # (signature, payload)

    def is_descendant(self, commit: str, ancestor: str) -> bool: ...

    def commits_between(self, old: str | None, new: str) -> list[str]: ...  # oldest first


@dataclass(frozen=True)
class CommitCheck:
    """One commit's verdict; ``reason`` is None exactly when ``ok``."""

    commit: str
    fingerprint: str | None  # the primary key that signed it, when gpg could tell
    ok: bool
    reason: Reason | None
    detail: str  # names the signer when ok, the problem otherwise


@dataclass(frozen=True)
class PolicyVerdict:
    ok: bool
    checked: tuple[CommitCheck, ...]  # oldest first
    diagnostics: tuple[Diagnostic, ...]  # one per rejected commit


def check_history(
    reader: CommitReader,
    last_processed: str | None,
    head: str,
    policy: CommitPolicy,
    verifier: Verifier,
    *,
    ref: str = MAIN_REF,
) -> PolicyVerdict:
    """Accept or reject the commits between ``last_processed`` and ``head`` under ``policy``.

    Raises :class:`HistoryRewritten` when ``head`` does not descend from ``last_processed``.
    """
    if last_processed is not None and not reader.is_descendant(head, last_processed):
        raise HistoryRewritten(ref, last_processed, head)
    if policy.mode == "off" or head == last_processed:
        return PolicyVerdict(ok=True, checked=(), diagnostics=())
    if policy.mode == "strict" and last_processed is not None:
        commits = reader.commits_between(last_processed, head)
    else:
        commits = [head]
    trusted = {key.fingerprint: key.name for key in policy.trusted}
    checks = tuple(_check(reader, commit, trusted, verifier) for commit in commits)
    diagnostics = tuple(_diagnostic(check, policy, last_processed) for check in checks if not check.ok)
    return PolicyVerdict(ok=not diagnostics, checked=checks, diagnostics=diagnostics)


def _check(reader: CommitReader, commit: str, trusted: dict[str, str], verifier: Verifier) -> CommitCheck:
    signed = reader.signature(commit)
    if signed is None:
        return CommitCheck(commit, None, False, Reason.SIGNATURE_MISSING, "commit is not signed")
    signature, payload = signed
    result = verifier.verify_detached(payload, signature)
    if not result.valid or result.fingerprint is None:
        return CommitCheck(
            commit, result.fingerprint, False, result.reason or Reason.SIGNATURE_INVALID, result.detail
        )
    if result.fingerprint not in trusted:
        detail = f"valid signature by {result.fingerprint}, which is not listed in {POLICY_FIELD}.trusted"
        return CommitCheck(commit, result.fingerprint, False, Reason.SIGNATURE_UNTRUSTED, detail)
    detail = f"signed by {trusted[result.fingerprint]} ({result.fingerprint})"
    return CommitCheck(commit, result.fingerprint, True, None, detail)


def _diagnostic(check: CommitCheck, policy: CommitPolicy, last_processed: str | None) -> Diagnostic:
    if policy.mode == "strict" and last_processed is not None:
        rule = f"mode strict needs every commit since {last_processed} signed by a trusted key"
    else:
        rule = f"mode {policy.mode} needs the tip of main signed by a trusted key"
    message = f"commit {check.commit} rejected: {check.detail}; {rule} ({_names(policy.trusted)})"
    return Diagnostic(check.commit, None, f"{POLICY_FIELD}.mode", message, check.reason or Reason.INVALID)


def _names(keys: Sequence[KeyRef]) -> str:
    return "trusted: " + (", ".join(key.name for key in keys) or "none listed")
