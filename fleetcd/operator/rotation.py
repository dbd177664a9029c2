"""``fleetcd keys propose|sign|chain``: rotating the fleet's trust through a pull request.

* :func:`propose` writes ``trust/root/<N+1>.yaml`` from the newest version N with the requested
  changes (:class:`Changes`), unsigned, loaded back through the strict loader before it is written.
* :func:`sign_version` adds detached signatures by the root keys in the operator's keyring that may
  sign it: root keys of version N-1 and of N itself (both thresholds must be met, by different
  people usually, so each runs ``keys sign`` with their own key and commits the ``.asc``).
* :func:`chain_status` walks the chain as the controller does and says, per version, whether it
  verifies and what is missing.

Nothing here makes a version count: the controller and every robot count signatures themselves
(:mod:`fleetcd.trust.rootchain`). A version is never edited once signed; a mistake is fixed by the
next version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fleetcd.errors import InvalidContent, SetupError
from fleetcd.layout import trust_root_path, trust_root_signature_path
from fleetcd.loading.documents import load_document
from fleetcd.loading.emit import dump_yaml
from fleetcd.loading.snapshot import read_directory
from fleetcd.models import TrustRoot
from fleetcd.models.base import Stage
from fleetcd.operator.repo import (
    load_trust_root,
    normalize_fingerprint,
    read_file,
    trust_root_versions,
    write_atomic,
)
from fleetcd.trust.gpg import Keyring, Signer

HEADER = (
    "# yaml-language-server: $schema=https://fleetcd.dev/schemas/v1/trustroot.json\n"
    "# Written by 'fleetcd keys propose'. It counts once a threshold of the previous version's root\n"
    "# keys and of its own signed it ('fleetcd keys sign'); never edit it after the first signature.\n"
)


@dataclass(frozen=True)
class KeyArg:
    """``NAME=FINGERPRINT`` from the command line."""

    name: str
    fingerprint: str

    @classmethod
    def parse(cls, text: str) -> KeyArg:
        name, sep, fpr = text.partition("=")
        if not sep or not name.strip():
            raise SetupError(f"{text!r}: expected NAME=FINGERPRINT")
        return cls(name.strip(), normalize_fingerprint(fpr))


@dataclass(frozen=True)
class Changes:
    """What version N+1 changes; empty lists and None leave a part as version N has it."""

    controller: Sequence[KeyArg] = ()  # replaces the list; the first key the controller holds signs
    add_signers: Sequence[KeyArg] = ()
    remove_signers: Sequence[str] = ()
    signer_threshold: int | None = None
    add_approvers: Sequence[KeyArg] = ()
    remove_approvers: Sequence[str] = ()
    approvals: Mapping[str, int] = field(default_factory=dict)
    add_root_keys: Sequence[KeyArg] = ()
    remove_root_keys: Sequence[str] = ()
    root_threshold: int | None = None
    expires: datetime | None = None


def next_document(current: Mapping[str, Any], changes: Changes) -> dict[str, Any]:
    """Version N+1's data from version N's (pure)."""
    data = {k: v for k, v in current.items()}
    data["version"] = int(current["version"]) + 1
    if changes.expires is not None:
        data["expires"] = changes.expires.isoformat().replace("+00:00", "Z")
    if changes.controller:
        data["controller"] = [_ref(k) for k in changes.controller]
    signers = dict(data["release_signers"])
    signers["keys"] = _edit(signers["keys"], changes.add_signers, changes.remove_signers)
    if changes.signer_threshold is not None:
        signers["threshold"] = changes.signer_threshold
    data["release_signers"] = signers
    data["approvers"] = _edit(data.get("approvers", []), changes.add_approvers, changes.remove_approvers)
    if changes.approvals:
        unknown = sorted(set(changes.approvals) - {s.value for s in Stage})
        if unknown:
            raise SetupError(f"--approvals: unknown stage {', '.join(unknown)} (staging, canary, production)")
        data["approvals"] = {**dict(data.get("approvals", {})), **changes.approvals}
    root = dict(data["root"])
    root["keys"] = _edit(root["keys"], changes.add_root_keys, changes.remove_root_keys)
    if changes.root_threshold is not None:
        root["threshold"] = changes.root_threshold
    data["root"] = root
    return data


def _ref(key: KeyArg) -> dict[str, str]:
    return {"name": key.name, "fingerprint": key.fingerprint}


def _edit(
    keys: Sequence[Mapping[str, Any]], add: Sequence[KeyArg], remove: Sequence[str]
) -> list[dict[str, Any]]:
    gone = {normalize_fingerprint(f) for f in remove}
    listed = {str(k["fingerprint"]) for k in keys}
    missing = sorted(gone - listed)
    if missing:
        raise SetupError(f"not listed, cannot remove: {', '.join(missing)}")
    kept = [dict(k) for k in keys if k["fingerprint"] not in gone]
    return kept + [_ref(k) for k in add if k.fingerprint not in {str(x["fingerprint"]) for x in kept}]


def propose(repo: Path, changes: Changes) -> Path:
    """Write version N+1 (unsigned); InvalidContent names the field when the result would not load."""
    current = load_trust_root(repo)
    data = next_document(current.data, changes)
    rel = trust_root_path(int(data["version"]))
    if (repo / rel).exists():
        raise SetupError(f"{rel} already exists")
    text = (HEADER + dump_yaml(data)).encode("utf-8")
    load_document(rel, text, TrustRoot)  # a proposal that does not load is never written
    write_atomic(repo / rel, text)
    return repo / rel


def sign_version(
    repo: Path, gnupghome: Path, version: int | None = None, fingerprint: str | None = None
) -> list[Path]:
    """Sign version ``version`` (default: the newest) with every root key here that may sign it
    (root keys of the previous version and of this one), or only ``fingerprint``."""
    versions = trust_root_versions(repo)
    number = version if version is not None else (versions[-1] if versions else 1)
    doc = load_trust_root(repo, number)
    allowed = set(doc.model.root.fingerprints)
    if number > 1:
        allowed |= load_trust_root(repo, number - 1).model.root.fingerprints
    with Signer(gnupghome) as signer:
        available = signer.secret_fingerprints()
        if fingerprint is not None:
            wanted = [normalize_fingerprint(fingerprint)]
            if wanted[0] not in allowed:
                raise SetupError(f"key {wanted[0]} is no root key of version {number} or {number - 1}")
            if wanted[0] not in available:
                raise SetupError(f"no secret key {wanted[0]} in the keyring; pass --gnupghome")
        else:
            wanted = sorted(allowed & set(available))
            if not wanted:
                raise SetupError(
                    f"no secret root key of version {number} or {number - 1} in the keyring "
                    f"({len(available)} secret key(s) there); pass --gnupghome or --key"
                )
        written = []
        for fpr in wanted:
            target = repo / trust_root_signature_path(number, fpr)
            write_atomic(target, signer.sign_detached(doc.raw, fpr))
            written.append(target)
    return written


@dataclass(frozen=True)
class VersionStatus:
    version: int
    expires: str
    root: str  # "threshold of N: names"
    verified: bool
    problem: str = ""


def chain_status(repo: Path) -> list[VersionStatus]:
    """Every trust-root version in the work tree, whether it verifies, and why not."""
    from fleetcd.loading.fleetspec import load_spec  # the validation stack, only for this command
    from fleetcd.validation.trust import verify_chain

    files, _ = read_directory(repo)
    spec, problems = load_spec(files)
    with Keyring.from_armored(spec.keys) as keyring:
        trusted, chain_problems = verify_chain(spec, keyring)
    newest = trusted.version if trusted is not None else 0
    why = {d.file: d.message for d in [*problems, *chain_problems] if d.severity == "error"}
    out = []
    for number in trust_root_versions(repo):
        rel = trust_root_path(number)
        try:
            model = load_document(rel, read_file(repo, rel), TrustRoot).model
        except InvalidContent as exc:
            out.append(VersionStatus(number, "?", "?", False, str(exc).splitlines()[0]))
            continue
        root = f"{model.root.threshold} of {len(model.root.keys)}: " + ", ".join(
            k.name for k in model.root.keys
        )
        problem = "" if number <= newest else why.get(rel, "not reached: an earlier version does not verify")
        out.append(VersionStatus(number, model.expires.isoformat(), root, number <= newest, problem))
    return out
