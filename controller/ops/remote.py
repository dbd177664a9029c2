"""What the read-only operator commands see: main and the state branch, fetched into the local mirror.

``get``, ``history`` and ``receipt`` read the same things the controller reads (step 1, fetch),
through the same mirror (:mod:`controller.reconcile.source`), and never write to the remote. main is
loaded leniently: a file that does not load is left out of the listing instead of hiding the rest,
because an operator looking at a broken fleet still needs to see it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from controller.reconcile.shards import StatusShard, fetch_shards, locate
from controller.reconcile.source import Source, fetch_all, open_mirror
from controller.reconcile.statebranch import StateSnapshot, load_state
from fleetcd.errors import InvalidContent
from fleetcd.git.repo import Oid, Repository
from fleetcd.git.trees import read_tree
from fleetcd.loading.fleetspec import FleetSpec, load_spec
from fleetcd.trust.gpg import Keyring


@dataclass(frozen=True)
class RemoteView:
    """One fetch of the fleet repository: main's files and spec, the state branch, the mirror."""

    repo: Repository
    main: str
    main_files: dict[str, bytes]
    spec: FleetSpec
    state: StateSnapshot
    # With status shards: each robot's report from its own shard (status ref -> commit); None: the
    # mirror's own refs/fleetcd/status/ (controller.reconcile.shards)
    status: Mapping[str, Oid] | None = None
    unreachable_shards: Mapping[str, str] = field(default_factory=dict)

    @property
    def has_state(self) -> bool:
        return self.state.commit is not None


def read_remote(source: Source, shards: Sequence[StatusShard] = ()) -> RemoteView:
    """Fetch main, the state branch and status refs (from ``shards`` when given) into the mirror
    and load them."""
    repo = open_mirror(source)
    fetched = fetch_all(repo, source, status=not shards)
    files, _symlinks = read_tree(repo, str(fetched.main))
    spec, _problems = load_spec(files)
    view = RemoteView(repo, str(fetched.main), files, spec, load_state(repo))
    if not shards:
        return view
    found = fetch_shards(repo, shards)
    return replace(view, status=locate(found).status, unreachable_shards=found.unreachable)


def open_keyring(keys: dict[str, bytes]) -> Keyring:
    """A verification keyring of the fleet's ``keys/``; unreadable key files are left out.

    One broken key file must not make every signature look unknown (validation does the same and
    reports the broken file; a listing only needs the good keys).
    """
    try:
        return Keyring.from_armored(keys)
    except InvalidContent as exc:
        broken = {d.file for d in exc.diagnostics}
    return Keyring.from_armored({path: data for path, data in keys.items() if path not in broken})
