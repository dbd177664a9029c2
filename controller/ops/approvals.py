"""Approvals around operator edits: how many a rollout has and needs, and which earlier ones still hold.

An approval signs the rollout's canonical content plus the release file's sha256
(:mod:`fleetcd.trust.approval`). ``rollback`` changes the release, so the current approvals stop
counting; but when the rollout goes back to content that approvers already signed (the usual case:
undoing the last release bump), their earlier signatures in main's history verify again. This
module finds those in the local repository's history, checks each one with the same threshold code
the controller uses, and restores only what verifies over the new payload — exactly what
``git revert`` of the bump would restore. Everything else is left for reviewers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from controller.ops.remote import open_keyring
from fleetcd.desired.configset import app_config_files, config_root
from fleetcd.errors import SetupError
from fleetcd.git.objects import read_blob
from fleetcd.git.repo import oid
from fleetcd.git.signatures import commits_between
from fleetcd.git.trees import open_repository, resolve_commit
from fleetcd.layout import approval_path, release_path
from fleetcd.loading.fleetspec import load_spec
from fleetcd.operator.repo import load_trust_root
from fleetcd.operator.signing import approvers as approver_choice
from fleetcd.planning.selection import device_stages, rollout_stage
from fleetcd.trust.approval import approval_payload
from fleetcd.trust.gpg import Signer
from fleetcd.trust.policy import check_approvals

RECOVERY_COMMITS = 1000  # main commits searched for earlier approvals of the same content


@dataclass(frozen=True)
class ApprovalNeed:
    """A rollout's approval threshold against what verifies in a snapshot."""

    rollout: str
    stage: str
    required: int
    verified: tuple[str, ...]  # approver names, sorted

    @property
    def met(self) -> bool:
        return len(self.verified) >= self.required

    def describe(self) -> str:
        names = f" ({', '.join(self.verified)})" if self.verified else ""
        return f"{len(self.verified)} of {self.required} approvals for stage {self.stage} verified{names}"


def approval_need(files: Mapping[str, bytes], rollout: str) -> ApprovalNeed | None:
    """The rollout's need in ``files``; None when the rollout or its release does not load."""
    spec, _ = load_spec(files)
    entry = spec.rollouts.get(rollout)
    trust = spec.trust_root
    if trust is None or entry is None:
        return None
    model = entry.doc.model
    release = spec.release(model.app, model.release)
    if release is None:
        return None
    cohorts = {k: v.model for k, v in spec.cohorts.items()}
    stages = device_stages(cohorts, {k: v.model for k, v in spec.devices.items()})
    stage = rollout_stage(model, cohorts, stages)
    required = trust.approvals.required(stage)
    configs = spec.config_set(model.app)
    payload = approval_payload(
        rollout, entry.doc.data, release.doc.path, release.doc.raw, (configs.root, configs.count)
    )
    with open_keyring(dict(spec.keys)) as keyring:
        status = check_approvals(entry.doc.path, payload, entry.approvals, trust.approvers, required, keyring)
    names = {k.fingerprint: k.name for k in trust.approvers}
    return ApprovalNeed(
        rollout, stage.value, required, tuple(sorted(names.get(f, f) for f in status.verified))
    )


def earlier_approvals(
    root: Path, files: Mapping[str, bytes], rollout: str, rollout_data: Mapping[str, object]
) -> dict[str, bytes]:
    """Approvals from main's history (HEAD back) that verify over the rollout as ``rollout_data``.

    ``files`` is the snapshot the rollout will live in (for fleet.yaml, keys and the release).
    """
    spec, _ = load_spec(files)
    app, version = rollout_data.get("app"), rollout_data.get("release")
    trust = spec.trust_root
    if trust is None or not isinstance(app, str) or not isinstance(version, str):
        return {}
    rel = release_path(app, version)
    if rel not in files:
        return {}
    payload = approval_payload(
        rollout, rollout_data, rel, files[rel], config_root(app_config_files(files, app))
    )
    approvers = trust.approvers
    candidates = _candidates(root, [approval_path(rollout, k.fingerprint) for k in approvers])
    restored: dict[str, bytes] = {}
    with open_keyring(dict(spec.keys)) as keyring:
        for path, signature in candidates:
            if path in restored:
                continue
            status = check_approvals(rel, payload, {path: signature}, approvers, 1, keyring)
            if status.met:
                restored[path] = signature
    return restored


def _candidates(root: Path, paths: list[str]) -> list[tuple[str, bytes]]:
    """Distinct historical contents of ``paths``, newest commit first."""
    try:
        repo = open_repository(root)
        head = str(resolve_commit(repo, "HEAD").id)
    except SetupError:
        return []  # no commits yet: nothing to recover
    seen: set[tuple[str, bytes]] = set()
    found: list[tuple[str, bytes]] = []
    for commit in commits_between(repo, None, head)[::-1][:RECOVERY_COMMITS]:
        for path in paths:
            data = read_blob(repo, oid(commit), path)
            if data is not None and (path, data) not in seen:
                seen.add((path, data))
                found.append((path, data))
    return found


def ensure_can_approve(root: Path, gnupghome: Path) -> None:
    """Raise (SetupError) unless ``gnupghome`` holds an approver's secret key: checked before writing."""
    choice = approver_choice(load_trust_root(root))
    with Signer(gnupghome) as signer:
        available = signer.secret_fingerprints()
        if not choice.present(available):
            choice.pick(available, None)  # raises, naming the approvers the trust root lists
