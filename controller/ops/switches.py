"""``fleetcd pause``, ``resume`` and ``rollback``: the one-line rollout edits a person would commit.

Pause and resume flip ``paused:``, an operational switch outside what approvers sign, so the
existing approvals stay valid — checked here, not assumed: the approval-covered content must be
byte-identical before and after. Rollback sets ``release:`` back (default: the highest published
version of the app below the current one), which changes what approvers signed; earlier approvals
of exactly the resulting content are restored from history (:mod:`controller.ops.approvals`),
stale ones removed, and what is still missing is said plainly. The controller turns the change
into a new generation with normal deployments. Every edit is textual, keeping comments.
"""

from __future__ import annotations

from pathlib import Path

from controller.ops.approvals import approval_need, earlier_approvals, ensure_can_approve
from controller.ops.local import Change, WorkTree, apply, check_change, finish, open_work_tree
from controller.ops.yamledit import UneditableYaml, set_scalar
from fleetcd.errors import InvalidContent
from fleetcd.layout import FileKind, classify, release_path, rollout_path
from fleetcd.loading.documents import Loaded, load_document
from fleetcd.loading.snapshot import read_directory
from fleetcd.models import Rollout
from fleetcd.models.base import parse_version
from fleetcd.operator import approve_rollout_all
from fleetcd.reasons import Reason
from fleetcd.trust.approval import canonical_rollout

PAUSED_COMMENT = "Operational switch (not covered by approvals): set by `fleetcd pause` / `fleetcd resume`."


def load_rollout(tree: WorkTree, name: str) -> Loaded[Rollout]:
    path = rollout_path(name)
    raw = tree.files.get(path)
    if raw is None:
        raise InvalidContent.at(path, f"no rollout {name!r} in {tree.root}", reason=Reason.UNKNOWN_REFERENCE)
    return load_document(path, raw, Rollout)


def _edited(doc: Loaded[Rollout], text: str) -> Loaded[Rollout]:
    try:
        return load_document(doc.path, text.encode("utf-8"), Rollout)
    except InvalidContent as exc:
        raise UneditableYaml(f"{doc.path}: the edit did not load back ({exc}); edit it by hand") from exc


def set_paused(
    start: Path, name: str, paused: bool, *, commit: bool = True, author: str | None = None
) -> Change:
    """Set ``paused: true|false`` in ``rollouts/<name>.yaml`` and commit it."""
    tree = open_work_tree(start)
    doc = load_rollout(tree, name)
    verb = "Pause" if paused else "Resume"
    if doc.model.paused == paused:
        state = "paused" if paused else "not paused"
        return Change(doc.path, f"{verb} rollout {name}", False, notes=(f"{name} is already {state}",))
    committer = tree.prepare_commit(author) if commit else None
    text = set_scalar(
        doc.raw.decode("utf-8"), "paused", "true" if paused else "false", comment=PAUSED_COMMENT
    )
    edited = _edited(doc, text)
    if edited.model.paused != paused or canonical_rollout(edited.data) != canonical_rollout(doc.data):
        raise UneditableYaml(
            f"{doc.path}: editing `paused:` would change more than the switch; edit it by hand"
        )
    changes: dict[str, bytes | None] = {doc.path: edited.raw}
    check_change(tree, changes, doc.path)
    tree.write(changes)
    effect = (
        "the controller dispatches no new deployments for it; deployments already running finish"
        if paused
        else "the controller carries on from where it stopped"
    )
    message = (
        f"{verb} rollout {name}\n\n"
        f"Set `paused: {'true' if paused else 'false'}` in {doc.path}: {effect}.\n"
        "An operational switch: the rollout's approvals stay valid.\n"
    )
    return finish(tree, doc.path, message, author=committer)


def previous_version(files: dict[str, bytes], app: str, current: str) -> str | None:
    """The highest published release of ``app`` below ``current``."""
    below = [v for v in published_versions(files, app) if parse_version(v) < parse_version(current)]
    return max(below, key=parse_version, default=None)


def published_versions(files: dict[str, bytes], app: str) -> list[str]:
    versions = []
    for path in files:
        where = classify(path)
        if where is not None and where.kind is FileKind.RELEASE and where.name == app:
            try:
                parse_version(where.version)
            except ValueError:
                continue  # validation reports it
            versions.append(where.version)
    return sorted(versions, key=parse_version)


def rollback(
    start: Path,
    name: str,
    to: str | None = None,
    *,
    approve_with: Path | None = None,
    commit: bool = True,
    author: str | None = None,
) -> Change:
    """Set the rollout's ``release:`` back to ``to`` (default: the previous published version)."""
    tree = open_work_tree(start)
    doc = load_rollout(tree, name)
    app, current = doc.model.app, doc.model.release
    target = to if to is not None else previous_version(tree.files, app, current)
    if target is None:
        raise InvalidContent.at(
            doc.path,
            f"no published release of {app} below {current} to roll back to; pass --to VERSION",
            line=doc.line("release"),
            field="release",
            reason=Reason.UNKNOWN_REFERENCE,
        )
    if target == current:
        return Change(
            doc.path, f"Roll back rollout {name}", False, notes=(f"{name} already has {app} {current}",)
        )
    published = published_versions(tree.files, app)
    if target not in published:  # a file named releases/<app>/latest.yaml is no version either
        raise InvalidContent.at(
            release_path(app, target),
            f"{app} {target} is not published (published: {', '.join(published) or 'none'})",
            reason=Reason.UNKNOWN_REFERENCE,
        )
    committer = tree.prepare_commit(author) if commit else None
    if approve_with is not None:
        ensure_can_approve(tree.root, approve_with)
    edited = _edited(doc, set_scalar(doc.raw.decode("utf-8"), "release", target, quote_like_before=True))
    if edited.model.release != target:
        raise UneditableYaml(f"{doc.path}: could not set `release:` to {target}; edit it by hand")
    stale = {p for p in tree.files if p.startswith(f"approvals/{name}/")}
    changes: dict[str, bytes | None] = {p: None for p in stale}
    changes[doc.path] = edited.raw
    restored = earlier_approvals(tree.root, apply(tree.files, changes), name, edited.data)
    changes.update(restored)
    check_change(tree, changes, doc.path)
    tree.write(changes)
    if approve_with is not None:
        approve_rollout_all(tree.root, tree.root / doc.path, approve_with)
    notes = _rollback_notes(tree, doc, target, len(stale - set(restored)), restored, approve_with is not None)
    message = (
        f"Roll back rollout {name}: {app} {current} -> {target}\n\n"
        f"Set `release: {target}` in {doc.path} (was {current}). The controller starts a new\n"
        f"generation that deploys {app} {target} to the rollout's robots.\n\n" + "\n".join(notes) + "\n"
    )
    return finish(tree, doc.path, message, author=committer, notes=tuple(notes))


def _rollback_notes(
    tree: WorkTree,
    doc: Loaded[Rollout],
    target: str,
    stale: int,
    restored: dict[str, bytes],
    approved: bool,
) -> list[str]:
    notes = [
        f"Approvals: rolling back changes what approvers signed (release {doc.model.release} -> {target}), "
        f"so the approvals of {doc.path} for {doc.model.release} no longer apply."
    ]
    if restored:
        notes.append(
            f"Restored {len(restored)} earlier approval(s) of exactly this content from git history "
            "(they verify again)."
        )
    if stale:
        notes.append(f"Removed {stale} stale approval(s).")
    if approved:
        notes.append("Signed new approvals with every approver key in --gnupghome.")
    files, _ = read_directory(tree.root)
    need = approval_need(files, doc.model.name)
    if need is not None and need.met:
        notes.append(f"Approvals now: {need.describe()}.")
    elif need is not None:
        notes.append(
            f"APPROVALS NEEDED: {need.describe()}. The controller will not apply this rollback until "
            f"approvers run `fleetcd approve {doc.path}` (or rerun with --approve --gnupghome DIR)."
        )
    if doc.model.paused:
        notes.append(f"The rollout is paused: the rollback starts after `fleetcd resume {doc.model.name}`.")
    return notes
