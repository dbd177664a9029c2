"""Reading and writing the controller's state branch (``refs/heads/fleetcd/state``).

The controller holds no state outside git: everything it knows is read here at the start of a
reconcile and written back as one commit at the end. Only this module and the delivery writer touch
git objects for the controller, always through ``fleetcd.git``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from controller.state.layout import META_FILE
from controller.state.model import ControllerMeta, DeviceFile, RolloutState
from fleetcd.git.objects import Identity, commit, ref_target, write_tree
from fleetcd.git.refs import STATE_BRANCH
from fleetcd.git.repo import Oid, Repository, tree_of
from fleetcd.git.trees import read_files

CONTROLLER_IDENTITY = Identity("fleetcd controller", "controller@fleetcd.invalid")


@dataclass
class StateSnapshot:
    """The state branch as read at the start of a reconcile."""

    commit: Oid | None
    meta: ControllerMeta
    rollouts: dict[str, RolloutState] = field(default_factory=dict)
    devices: dict[str, DeviceFile] = field(default_factory=dict)
    audit: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


def load_state(repo: Repository, ref: str = STATE_BRANCH) -> StateSnapshot:
    """Parse every file the controller wrote; a state branch that does not parse is a loud error."""
    head = ref_target(repo, ref)
    if head is None:
        return StateSnapshot(commit=None, meta=ControllerMeta())
    files = read_files(repo, head)
    snapshot = StateSnapshot(commit=head, meta=ControllerMeta(), files=files)
    for path, data in files.items():
        if path == META_FILE:
            snapshot.meta = ControllerMeta.model_validate_json(data)
        elif path.startswith("rollouts/") and path.endswith(".json"):
            state = RolloutState.model_validate_json(data)
            snapshot.rollouts[state.name] = state
        elif path.startswith("devices/") and path.endswith(".json"):
            device = DeviceFile.model_validate_json(data)
            snapshot.devices[device.state.device] = device
        elif path.startswith("audit/"):
            snapshot.audit[path] = data
    return snapshot


def dump(model: RolloutState | DeviceFile | ControllerMeta) -> bytes:
    """Stable JSON for state files: sorted keys and one value per line, so git diffs stay readable."""
    return json.dumps(model.model_dump(mode="json"), indent=1, sort_keys=True).encode() + b"\n"


def changed_files(old: Mapping[str, bytes], new: Mapping[str, bytes | None]) -> dict[str, bytes | None]:
    """Only the entries of ``new`` that differ from ``old`` (None deletes)."""
    return {
        path: data
        for path, data in new.items()
        if (data is None and path in old) or (data is not None and old.get(path) != data)
    }


def write_state(
    repo: Repository,
    snapshot: StateSnapshot,
    changes: Mapping[str, bytes | None],
    message: str,
    when: datetime,
    ref: str = STATE_BRANCH,
) -> Oid | None:
    """Commit ``changes`` on top of the snapshot's commit and move the ref (compare-and-swap).

    Returns the new commit, or None when nothing changed (a no-op reconcile writes no commit).
    """
    delta = changed_files(snapshot.files, changes)
    if not delta and snapshot.commit is not None:
        return None
    base = tree_of(repo, snapshot.commit) if snapshot.commit is not None else None
    tree = write_tree(repo, delta, base)
    parents = [snapshot.commit] if snapshot.commit is not None else []
    return commit(repo, ref, tree, message, parents, CONTROLLER_IDENTITY, when)
