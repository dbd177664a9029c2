"""``fleetcd robot add|retire|rotate-key``: a real robot's life in the fleet, written as commits.

* **add** (:mod:`controller.ops.enrol`) writes the device file and cohort entry, the robot's
  folder (``agent.yaml``, pinned keys, SSH key) and its gitolite access.
* **retire** sets ``decommissioned: true``: no rollout targets the robot, its open deployments are
  archived and its desired-state ref is removed by the controller. The device file, its records,
  audit lines and status ref stay: history is kept. Its keys leave gitolite.
* **rotate-key** replaces the robot's key in gitolite with a new one; the old one is refused once
  the checkout is pushed.

With status shards on other git servers, each of those servers' gitolite-admin checkouts is given
too (``--shard-admin NAME=PATH``, :class:`ShardAdmin`): add enrols the robot's key on the server of
its own shard as well, retire takes its keys off every one given, rotate-key replaces its key on
every one that holds it. Otherwise a retired robot could still push status to its shard.

This module holds retire, rotate-key and what all three share: the id check, the change they
report (:class:`RobotChange`), and :func:`write_and_commit`, which writes the gitolite checkout and
the fleet repository after everything was decided and validated, commits both, and with
:class:`Undo` puts back what was written when a later write fails.
"""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.ops.gitolite import AdminCheckout, AdminEdit, AdminResult, ShardAdmin, shard_checkouts
from controller.ops.local import WorkTree, check_change, open_work_tree, wrap_message
from controller.ops.sshkeys import PRIVATE_KEY_FILE, PublicKey, generate_key, read_public_key
from controller.ops.yamledit import UneditableYaml, set_scalar
from fleetcd.errors import InvalidContent, SetupError
from fleetcd.git.worktree import commit_all
from fleetcd.layout import device_path
from fleetcd.loading.documents import Loaded, load_document
from fleetcd.models import Device
from fleetcd.models.base import SAFE_NAME_MAX, SAFE_NAME_PATTERN
from fleetcd.reasons import Reason

RETIRED_COMMENT = "Retired by `fleetcd robot retire`: no rollout targets it; its records and audit are kept."


@dataclass(frozen=True)
class RobotChange:
    """What a ``fleetcd robot`` command did, for the CLI to print."""

    robot: str
    changed: bool
    fleet_paths: tuple[str, ...] = ()
    fleet_commit: str | None = None
    admin_paths: tuple[str, ...] = ()
    admin_commit: str | None = None
    shard_admins: tuple[AdminResult, ...] = ()  # the status shards' gitolite-admin checkouts changed
    pushed: bool = False
    folder: Path | None = None  # the robot's folder (add) or the new key's folder (rotate-key)
    key: PublicKey | None = None
    notes: tuple[str, ...] = ()


def check_robot_id(robot: str) -> None:
    """Refuse an id that cannot be a file name, a gitolite user and a git ref component."""
    if len(robot) > SAFE_NAME_MAX or not re.fullmatch(SAFE_NAME_PATTERN, robot):
        raise ValueError(
            f"robot id {robot!r} is not a safe name: letters and digits, single '.', '_' or '-' "
            f"between them, at most {SAFE_NAME_MAX} characters"
        )


def check_outside(folder: Path, *repos: Path | None) -> None:
    """Refuse a folder for a private key inside a repository: a commit would publish the key."""
    target = folder.resolve()
    for repo in repos:
        if repo is not None and target.is_relative_to(repo.resolve()):
            raise SetupError(
                f"{folder} is inside the repository {repo}: the robot's private key would be "
                "committed there; choose a folder outside it"
            )


def load_device(tree: WorkTree, robot: str) -> Loaded[Device]:
    path = device_path(robot)
    raw = tree.files.get(path)
    if raw is None:
        raise InvalidContent.at(path, f"no robot {robot!r} in {tree.root}", reason=Reason.UNKNOWN_REFERENCE)
    return load_document(path, raw, Device)


@dataclass
class Undo:
    """What was written so far, to put back when a later write fails.

    ``with Undo() as undo:`` runs the steps, newest first, when the block ends on any exception
    (Ctrl-C included), then lets the exception go on.
    """

    steps: list[Callable[[], None]] = field(default_factory=list)

    def run(self) -> None:
        for step in reversed(self.steps):
            with contextlib.suppress(OSError):  # best effort: the original error is the one to report
                step()

    def __enter__(self) -> Undo:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.run()


def robot_key(staging: Path, robot: str, public_key: Path | None) -> PublicKey:
    """The robot's SSH key pair made in ``staging``, or the public key it brings (copied there)."""
    if public_key is None:
        return generate_key(staging, f"fleetcd-robot-{robot}")
    key = read_public_key(public_key)
    (staging / f"{PRIVATE_KEY_FILE}.pub").write_text(key.line + "\n", encoding="utf-8")
    return key


def _restore_tree(tree: WorkTree, paths: list[str]) -> Callable[[], None]:
    before = {p: tree.files.get(p) for p in paths}
    return lambda: tree.write(before)


def _restore_admin(admin: AdminCheckout, paths: list[str]) -> Callable[[], None]:
    before = admin.snapshot(dict.fromkeys(paths))
    return lambda: admin.write(before)


def write_and_commit(
    tree: WorkTree,
    changes: Mapping[str, bytes | None],
    admin: AdminCheckout | None,
    admin_changes: Mapping[str, str | None],
    undo: Undo,
    *,
    message: str,
    committer: str | None,
    admin_author: str | None,
    push: bool,
    shard_edits: Sequence[AdminEdit] = (),
) -> dict[str, Any]:
    """Write the gitolite checkouts (the primary's, then each status shard's), then the fleet
    repository; commit them all; push the checkouts."""
    message = wrap_message(message)
    if admin is not None and admin_changes:
        undo.steps.append(_restore_admin(admin, list(admin_changes)))
        admin.write(admin_changes)
    edits = [edit for edit in shard_edits if edit.changes]
    for edit in edits:
        undo.steps.append(_restore_admin(edit.checkout, list(edit.changes)))
        edit.checkout.write(edit.changes)
    if changes:
        undo.steps.append(_restore_tree(tree, list(changes)))
        tree.write(changes)
    admin_commit = (
        admin.commit(message, admin_author)
        if admin is not None and admin_changes and admin_author is not None
        else None
    )
    shard_results = [
        AdminResult(
            edit.shard,
            edit.checkout.root,
            tuple(sorted(edit.changes)),
            edit.checkout.commit(message, edit.author) if edit.author is not None else None,
        )
        for edit in edits
    ]
    undo.steps.clear()  # committed: from here on the change stands even if the rest fails
    fleet_commit = commit_all(tree.root, message, committer) if changes and committer is not None else None
    to_push = [
        edit.checkout for edit, done in zip(edits, shard_results, strict=True) if done.commit is not None
    ]
    if admin is not None and admin_commit is not None:
        to_push.insert(0, admin)
    pushed = False
    if push and to_push:
        for checkout in to_push:  # the primary first: the robot's fleet access before its shard's
            checkout.push()
        pushed = True
    return {
        "fleet_paths": tuple(sorted(changes)),
        "fleet_commit": fleet_commit,
        "admin_paths": tuple(sorted(admin_changes)),
        "admin_commit": admin_commit,
        "shard_admins": tuple(shard_results),
        "pushed": pushed,
    }


def retire_robot(
    start: Path,
    robot: str,
    *,
    gitolite_admin: Path | None = None,
    commit: bool = True,
    author: str | None = None,
    push: bool = False,
    shard_admins: Sequence[ShardAdmin] = (),
) -> RobotChange:
    """Set ``decommissioned: true`` for ``robot`` and take its keys out of gitolite: the primary's
    and every status shard's checkout given (it may have moved between shards: all of them)."""
    check_robot_id(robot)
    tree = open_work_tree(start)
    device = load_device(tree, robot)
    changes: dict[str, bytes | None] = {}
    if not device.model.decommissioned:
        text = set_scalar(device.raw.decode("utf-8"), "decommissioned", "true", comment=RETIRED_COMMENT)
        edited = load_document(device.path, text.encode("utf-8"), Device)
        if edited.model != device.model.model_copy(update={"decommissioned": True}):
            raise UneditableYaml(
                f"{device.path}: setting `decommissioned:` would change more; edit it by hand"
            )
        changes[device.path] = edited.raw
        check_change(tree, changes, device.path)
    admin = AdminCheckout.open(gitolite_admin) if gitolite_admin is not None else None
    admin_changes = admin.revoke(robot) if admin is not None else {}
    shard_edits = [
        AdminEdit(name, checkout, revoked, checkout.prepare_commit(author) if commit and revoked else None)
        for name, checkout in shard_checkouts(shard_admins, gitolite_admin)
        for revoked in [checkout.revoke(robot)]
    ]
    if not changes and not admin_changes and not any(edit.changes for edit in shard_edits):
        return RobotChange(robot, False, notes=(f"{robot} is already retired and holds no key in gitolite",))
    committer = tree.prepare_commit(author) if commit and changes else None
    admin_author = admin.prepare_commit(author) if admin is not None and commit and admin_changes else None
    message = (
        f"Retire robot {robot}\n\n"
        f"{device.path}: decommissioned. No rollout targets it any more; its open deployments are "
        "archived and the controller removes its desired-state ref. Its device file, records, audit "
        "lines and status history are kept.\n"
    )
    if admin_changes:
        revoked = ", ".join(sorted(p for p in admin_changes if p.endswith(".pub")))
        message += f"Its SSH keys leave gitolite ({revoked or 'none held'}).\n"
    for edit in shard_edits:
        if edit.changes:
            message += f"Its SSH keys leave the gitolite of status shard {edit.shard}.\n"
    with Undo() as undo:
        result = write_and_commit(
            tree,
            changes,
            admin,
            admin_changes,
            undo,
            message=message,
            committer=committer,
            admin_author=admin_author,
            push=push,
            shard_edits=shard_edits,
        )
    notes = [] if admin is not None else ["no --gitolite-admin: revoke its key on the git server yourself"]
    return RobotChange(robot, True, notes=tuple(notes), **result)


def rotate_key(
    start: Path,
    robot: str,
    *,
    gitolite_admin: Path,
    out: Path | None = None,
    public_key: Path | None = None,
    commit: bool = True,
    author: str | None = None,
    push: bool = False,
    shard_admins: Sequence[ShardAdmin] = (),
) -> RobotChange:
    """Replace ``robot``'s SSH key in gitolite: a new key in ``out`` (or ``public_key``); also in
    every status shard's checkout given that holds a key of ``robot``."""
    check_robot_id(robot)
    if (out is None) == (public_key is None):
        raise ValueError("give either a folder for the new key or the robot's new public key")
    tree = open_work_tree(start)
    device = load_device(tree, robot)
    if device.model.decommissioned:
        raise InvalidContent.at(
            device.path, f"{robot} is retired; its key is not rotated", field="decommissioned"
        )
    admin = AdminCheckout.open(gitolite_admin)
    admin_author = admin.prepare_commit(author) if commit else None
    shards = [(name, c) for name, c in shard_checkouts(shard_admins, gitolite_admin) if c.key_files_of(robot)]
    shard_authors = [c.prepare_commit(author) if commit else None for _, c in shards]
    if out is not None:
        check_outside(out, tree.root, gitolite_admin, *(c.root for _, c in shards))
    if out is not None and (out / PRIVATE_KEY_FILE).exists():
        raise SetupError(f"{out / PRIVATE_KEY_FILE}: a key is already there; it is never overwritten")
    staging = Path(tempfile.mkdtemp(dir=out.parent if out is not None else None, prefix=f".{robot}-key."))
    try:
        with Undo() as undo:
            key = robot_key(staging, robot, public_key)
            admin_changes = admin.rotate(robot, key)
            shard_edits = [
                AdminEdit(name, checkout, checkout.rotate(robot, key), shard_author)
                for (name, checkout), shard_author in zip(shards, shard_authors, strict=True)
            ]
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                for name in (PRIVATE_KEY_FILE, f"{PRIVATE_KEY_FILE}.pub"):
                    (staging / name).rename(out / name)
                    undo.steps.append(functools.partial((out / name).unlink, missing_ok=True))
            message = (
                f"Rotate robot {robot}'s SSH key\n\nNew key {key.fingerprint}; every earlier key of "
                f"{robot} is removed, so the server refuses it once this is pushed.\n"
            )
            result = write_and_commit(
                tree,
                {},
                admin,
                admin_changes,
                undo,
                message=message,
                committer=None,
                admin_author=admin_author,
                push=push,
                shard_edits=shard_edits,
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RobotChange(robot, True, folder=out, key=key, **result)
