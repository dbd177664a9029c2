"""``fleetcd deploy APP@VERSION --to TARGET --idempotency-key K``: write a rollout file and commit it.

For automation (a CI job, a chat bot) that must not deploy twice when it retries: the key is
written into the rollout file as ``# fleetcd-idempotency-key: K`` next to the request it served,
so the same request again finds it and writes nothing, and a different request under the same key
is refused. The rollout is named ``<app>-<key>`` (made safe; a hash keeps lossy names distinct),
targets a cohort or robot by name, and spells out the fleet's default strategy so reviewers see
the numbers they approve. It is validated in memory first: an unknown release or target, an
overlap with another rollout of the app, anything that adds an error is refused with the
diagnostic; only missing approvals are let through, and said.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from controller.ops.approvals import approval_need, ensure_can_approve
from controller.ops.local import Change, WorkTree, check_change, finish, open_work_tree
from fleetcd.errors import InvalidContent
from fleetcd.layout import FLEET_FILE, FileKind, classify, rollout_path
from fleetcd.loading.documents import load_document
from fleetcd.loading.snapshot import read_directory
from fleetcd.models import Fleet
from fleetcd.models.base import API_VERSION_V1, SAFE_NAME_MAX, SAFE_NAME_PATTERN
from fleetcd.models.rollout import default_strategy
from fleetcd.operator import approve_rollout_all
from fleetcd.reasons import Reason

KEY_MARK = "# fleetcd-idempotency-key: "
REQUEST_MARK = "# fleetcd-deploy: "
KEY_MAX_CHARS = 200
NAME_HASH_CHARS = 8


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be an idempotency key (it lives on one comment line), or None."""
    if not key.strip():
        return "must not be empty"
    if len(key) > KEY_MAX_CHARS:
        return f"at most {KEY_MAX_CHARS} characters"
    if not key.isprintable() or key != key.strip():
        return "printable characters only, no leading or trailing spaces"
    return None


def rollout_name(app: str, key: str) -> str:
    """``<app>-<key>`` as a safe name; a key that does not survive as-is gets a hash suffix."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-")
    name = f"{app}-{slug}" if slug else app
    if slug == key and len(name) <= SAFE_NAME_MAX:
        return name
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:NAME_HASH_CHARS]
    return f"{name[: SAFE_NAME_MAX - NAME_HASH_CHARS - 1].rstrip('-._')}-{digest}"


def request_line(app: str, version: str, targets: Sequence[str]) -> str:
    return f"{app}@{version} " + " ".join(f"--to {t}" for t in sorted(set(targets)))


def find_key(files: dict[str, bytes], key: str) -> tuple[str, int, str | None] | None:
    """(rollout file, line, recorded request) of the rollout written for ``key``, or None."""
    for path in sorted(files):
        where = classify(path)
        if where is None or where.kind is not FileKind.ROLLOUT:
            continue
        lines = files[path].decode("utf-8", errors="replace").splitlines()
        for number, line in enumerate(lines, start=1):
            if line.rstrip() == KEY_MARK + key:
                recorded = next(
                    (x[len(REQUEST_MARK) :].strip() for x in lines if x.startswith(REQUEST_MARK)), None
                )
                return path, number, recorded
    return None


def deploy(
    start: Path,
    app: str,
    version: str,
    targets: Sequence[str],
    key: str,
    *,
    approve_with: Path | None = None,
    commit: bool = True,
    author: str | None = None,
) -> Change:
    """Write and commit ``rollouts/<app>-<key>.yaml``, or nothing when ``key`` already did this."""
    problem = key_problem(key)
    if problem is not None:
        raise ValueError(f"idempotency key {key!r}: {problem}")
    if not re.fullmatch(SAFE_NAME_PATTERN, app):
        raise ValueError(f"app {app!r} is not a safe name (letters, digits, single '.', '_' or '-')")
    tree = open_work_tree(start)
    request = request_line(app, version, targets)
    earlier = find_key(tree.files, key)
    if earlier is not None:
        path, line, recorded = earlier
        if recorded == request:
            note = f"idempotency key {key!r} already deployed {request} in {path}: nothing written"
            return Change(path, f"Deploy {request}", False, notes=(note,))
        raise InvalidContent.at(
            path,
            f"idempotency key {key!r} was used for {recorded or 'another request'}, not for {request}",
            line=line,
            reason=Reason.DUPLICATE_ID,
        )
    name = rollout_name(app, key)
    path = rollout_path(name)
    if path in tree.files:
        raise InvalidContent.at(
            path, f"exists and was not written for idempotency key {key!r}", reason=Reason.DUPLICATE_ID
        )
    committer = tree.prepare_commit(author) if commit else None
    if approve_with is not None:
        ensure_can_approve(tree.root, approve_with)
    data = _rollout_bytes(tree, name, app, version, targets, key, request)
    changes: dict[str, bytes | None] = {path: data}
    check_change(tree, changes, path)
    tree.write(changes)
    if approve_with is not None:
        approve_rollout_all(tree.root, tree.root / path, approve_with)
    need = approval_need(read_directory(tree.root)[0], name)
    notes: tuple[str, ...] = (f"Idempotency key: {key}",)
    if need is not None and not need.met:
        notes += (
            f"APPROVALS NEEDED: {need.describe()}. The controller will not start it until approvers run "
            f"`fleetcd approve {path}` (or rerun with --approve --gnupghome DIR).",
        )
    elif need is not None:
        notes += (f"Approvals: {need.describe()}.",)
    message = f"Deploy {app} {version} to {', '.join(sorted(set(targets)))}\n\n" + "\n".join(notes) + "\n"
    return finish(tree, path, message, author=committer, notes=notes)


def _rollout_bytes(
    tree: WorkTree, name: str, app: str, version: str, targets: Sequence[str], key: str, request: str
) -> bytes:
    path = rollout_path(name)
    cohorts, devices = [], []
    for target in sorted(set(targets)):
        if f"cohorts/{target}.yaml" in tree.files:
            cohorts.append(target)
        elif f"devices/{target}.yaml" in tree.files:
            devices.append(target)
        else:
            raise InvalidContent.at(
                path,
                f"target {target!r} is neither a cohort (cohorts/{target}.yaml) "
                f"nor a robot (devices/{target}.yaml)",
                field="targets",
                reason=Reason.UNKNOWN_REFERENCE,
            )
    doc: dict[str, Any] = {"apiVersion": API_VERSION_V1, "kind": "Rollout", "name": name, "app": app}
    doc["release"] = version
    doc["targets"] = {k: v for k, v in (("cohorts", cohorts), ("devices", devices)) if v}
    doc["strategy"] = _default_strategy(tree)
    header = (
        f"{KEY_MARK}{key}\n{REQUEST_MARK}{request}\n"
        "# Written by `fleetcd deploy`. The strategy is the fleet default at the time,\n"
        "# spelled out so reviewers approve the numbers that apply.\n"
    )
    body: str = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return (header + body).encode("utf-8")


def _default_strategy(tree: WorkTree) -> dict[str, Any]:
    raw = tree.files.get(FLEET_FILE)
    fleet = load_document(FLEET_FILE, raw, Fleet).model if raw is not None else None
    strategy = (
        fleet.defaults.strategy if fleet is not None and fleet.defaults.strategy else default_strategy()
    )
    dumped: dict[str, Any] = strategy.model_dump(mode="json", exclude_none=True)
    return dumped
