"""Where the fleet repository lives: a local bare mirror fetched from and pushed to ``--repo URL``.

Every URL pygit2 reaches works (a local path, ``file://``, ``ssh://``). The mirror is a cache: it
can be deleted at any moment; the remote is the truth. :func:`open_mirror` hands it out under a
whole-cache lock (:func:`fleetcd.git.mirror.open_locked_mirror`): one process at a time, held until
the handle is closed (``with open_mirror(source) as repo:``) or freed; another process waits up to
``Source.lock_wait_seconds``, then gets :class:`~fleetcd.git.mirror.MirrorBusy` (a setup error, exit
4). Taking it, a process knows it is the mirror's only writer, so git lock files a killed
controller left are removed and a mirror that cannot be opened is rebuilt before anything runs.

Publishing is one push (:func:`publish`): every robot's desired-state ref and the state branch
together, the state branch compare-and-swapped on the commit the reconcile started from. To a
local repository (the embedded default) it is one ``git push --atomic`` with one wildcard refspec
over the desired-state namespace: all refs or none, so a controller that lost a race changes
nothing, and robots never see a root that the state branch does not vouch for. From
:data:`~fleetcd.git.localpush.DIRECT_FROM_REFS` moved refs, into a local server that would run no
hook, the same push is done by hand (:mod:`fleetcd.git.localpush`: one pack, one rename of its
``packed-refs``, the same all-or-none and lease), because receive-pack's loose ref files and the
packing after them cost minutes at 100,000 robots; so is the state branch alone into a server
holding many refs (:func:`~fleetcd.git.localpush.by_hand_pays`), which receive-pack would first
advertise. Only the refs that differ from the server's are sent
(:func:`~fleetcd.git.packedrefs.refs_to_send`, in time that grows with them). libgit2 (other
URLs) has neither atomic nor wildcard pushes: there the moved refs go as explicit refspecs in the
same push, state branch last, its lease checked before anything is sent; a race lost in the
instant between that check and the server's update is healed by the next reconcile
(:mod:`controller.reconcile.delivery_step` re-signs a root the state branch does not vouch for).

The wildcard pushes whatever the mirror holds under the prefix, so the mirror holds only what the
controller means to publish there: :func:`fetch_all` mirrors the server's desired-state refs
(pruning those the server lacks — a controller killed before pushing must see what robots can
fetch, not its own unpushed refs) and drops any other ref under those prefixes. Robots' status
refs live outside them and are never pushed. After every push to a local repository its refs
are packed once :data:`PACK_FROM_LOOSE_REFS` of them are loose files: an idle reconcile lists
20,000 refs at 10,000 robots, which costs about 7x more as loose files
(``bench/controller_reconcile.py``). A push by hand packs them in its own rewrite of
``packed-refs`` (:func:`~fleetcd.git.localpush.push_by_hand`'s ``fold``); after a real push,
``git pack-refs --all`` does. The mirror's own writes of many desired refs never make loose
files (:mod:`fleetcd.git.packedrefs`).

Objects are kept bounded the same way (:mod:`fleetcd.git.housekeeping`, :func:`housekeep_repository`):
the mirror at the end of every reconcile (:func:`controller.reconcile.steps.reconcile_once`, under
its lock), and a local server after every push by hand into it, past git's own ``gc --auto``
thresholds; a failure is logged and left for the next reconcile, never raised.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from controller.reconcile.result import Repack
from fleetcd.errors import SetupError, TransportError
from fleetcd.git import gitcli
from fleetcd.git.gitcli import checked_url
from fleetcd.git.hostkeys import HostKeyPolicy
from fleetcd.git.housekeeping import Policy, housekeep
from fleetcd.git.localpush import (
    LocalPushBusy,
    by_hand_pays,
    loose_refs,
    push_by_hand,
    refused,
)
from fleetcd.git.mirror import LockedRepository, open_locked_mirror
from fleetcd.git.objects import delete_refs, ref_target
from fleetcd.git.packedrefs import loose_refs_at_least, read_refs, refs_to_send
from fleetcd.git.reflisting import RefListingMemo
from fleetcd.git.refs import (
    DESIRED_PREFIX,
    MAIN_BRANCH,
    NAMESPACES_PREFIX,
    STATE_BRANCH,
    STATUS_PREFIX,
)
from fleetcd.git.remote import (
    DEFAULT_TIMEOUT_S,
    ListedRefs,
    SshKey,
    fetch,
    fetch_moved,
    fetch_untrusted,
    is_local,
    push,
)
from fleetcd.git.repo import Oid, Repository
from fleetcd.models.base import SAFE_NAME_MAX, SAFE_NAME_PATTERN

DESIRED_PREFIXES = (NAMESPACES_PREFIX, DESIRED_PREFIX)  # both delivery layouts (namespaced or flat)
# How long a second process on one cache waits for the first: about twice a reconcile fanning out
# to 10,000 robots on a loaded 2-core machine (write ~15 s + publish ~23 s,
# bench/results/controller_fanout.txt). Two controllers on one --cache are a setup mistake: exit 4.
MIRROR_LOCK_WAIT_SECONDS = 120.0
# Refs are packed (``git pack-refs --all``), in the mirror after a fetch and on a local server after
# a push, once this many are loose files: measured at 10,000 robots (20,000 refs), listing them took
# 3.2 s as loose files and 0.1 s packed; but packing rewrites every packed ref whether or not any
# is loose (0.6 s at 20,000 refs), so a reconcile that moved a few refs leaves them loose.
PACK_FROM_LOOSE_REFS = 256
log = logging.getLogger("fleetcd.controller")


@dataclass(frozen=True)
class Source:
    url: str
    mirror: Path
    credentials: SshKey | None = None
    host_keys: HostKeyPolicy | None = None
    lock_wait_seconds: float = MIRROR_LOCK_WAIT_SECONDS  # for another process's hold on the mirror
    # When the mirror (at the end of each reconcile) and a local server pushed into by hand (after
    # that push) are repacked by git's own ``gc --auto``; None: never (a benchmark's "before").
    housekeeping: Policy | None = field(default_factory=Policy)

    @classmethod
    def for_url(
        cls,
        url: str,
        cache_dir: Path,
        credentials: SshKey | None = None,
        host_keys: HostKeyPolicy | None = None,
    ) -> Source:
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        return cls(url, cache_dir / f"mirror-{digest}.git", credentials, host_keys)


@dataclass(frozen=True)
class Fetched:
    main: Oid
    state: Oid | None
    # status ref -> commit; with status shards, each robot's from its own shard, plus reports found
    # in the wrong shard under their mirror name (controller.reconcile.shards.Located.marked)
    status: Mapping[str, Oid]
    # every desired-state ref of both layouts the mirror holds after the fetch (None: not listed),
    # so that the deliver step needs no second pass over the mirror's refs (0.2-0.5 s at 100,000)
    desired: Mapping[str, Oid] | None = None


def open_mirror(source: Source) -> LockedRepository:
    """The mirror under its lock, healed, created if missing; close it (or use ``with``) when done."""
    return open_locked_mirror(source.mirror, wait_seconds=source.lock_wait_seconds)


def fetch_all(
    repo: Repository, source: Source, *, status: bool = True, memo: RefListingMemo | None = None
) -> Fetched:
    """Main, the state branch, every robot's status and desired-state ref, force-updated from the
    remote; desired-state refs the remote lacks are deleted from the mirror. ``status=False``
    leaves robots' status refs out (they live in status shards: :mod:`controller.reconcile.shards`).

    From a local repository (the embedded default) only the refs that moved are touched
    (:func:`~fleetcd.git.remote.fetch_moved`): 200,000 refs at 100,000 robots cost libgit2's fetch
    25.6 s with nothing new. Other URLs go through libgit2 (SSH credentials and host-key pinning).
    There a status ref may point at anything (see :mod:`fleetcd.git.untrusted`); once fetched,
    libgit2 fails every later fetch into this mirror. So when a fetch fails, refs that cannot be
    walked as commits are deleted from the mirror (the server keeps them; ingest refuses them by
    name) and the fetch runs once more. An honest fleet pays nothing for this.

    With ``memo`` (``controller run``), the returned status and desired-state maps are the last
    fetch's, patched with the refs the fetch names as changed (:func:`_partition`): read-only
    views, valid until the next fetch.
    """
    found: Mapping[str, Oid]
    kept = memo.kept if memo is not None else None
    if memo is not None:
        memo.kept = None  # valid again only once this fetch has patched it
    if is_local(source.url):
        names = [MAIN_BRANCH, STATE_BRANCH, *([STATUS_PREFIX] if status else []), *DESIRED_PREFIXES]
        found = fetch_moved(repo, source.url, names, memo=memo)
    else:
        found = _fetch_libgit2(repo, source, status=status)
        if status:  # libgit2 does not prune: a status ref deleted on the server would stay here
            _prune(repo, found, STATUS_PREFIX, source.url)
    if loose_refs_at_least(Path(repo.path), PACK_FROM_LOOSE_REFS):
        _pack_mirror_refs(repo)
    main = found.get(MAIN_BRANCH)
    if main is None:
        raise SetupError(f"{source.url}: has no {MAIN_BRANCH}")
    if STATE_BRANCH not in found and repo.references.get(STATE_BRANCH) is not None:
        repo.references.delete(STATE_BRANCH)  # the remote has none: ours is a stale cache
    # Written here but never pushed (a crash in between), or not a desired-state ref at all: the
    # wildcard push must not publish either.
    stray = _stray(repo, found, local=is_local(source.url), memo=memo)
    for ref in stray:
        repo.references.delete(ref)
    partition = _partition(found, set(stray), kept)
    if memo is not None:
        memo.kept = partition
    return Fetched(
        main=main,
        state=found.get(STATE_BRANCH),
        status=MappingProxyType(partition.reports),
        desired=MappingProxyType(partition.desired),
    )


@dataclass
class _Partition:
    """The listing's status and desired-state refs, as :class:`Fetched` hands them out; kept in
    the fetch's memo and patched with the refs each fetch names as changed."""

    reports: dict[str, Oid] = field(default_factory=dict)
    desired: dict[str, Oid] = field(default_factory=dict)
    patched: int = 0  # fetches that patched it since it was built (for the tests)

    def put(self, ref: str, oid: str | None, stray: set[str]) -> None:
        """``ref`` at ``oid`` (hex; None: not listed) in the map its prefix says; strays in none."""
        self.reports.pop(ref, None)
        self.desired.pop(ref, None)
        if oid is None:
            return
        if ref.startswith(STATUS_PREFIX):
            self.reports[ref] = Oid(hex=oid)
        elif ref.startswith(DESIRED_PREFIXES) and ref not in stray:
            self.desired[ref] = Oid(hex=oid)


def _partition(found: Mapping[str, Oid], stray: set[str], kept: object) -> _Partition:
    """The status and desired-state maps of ``found``: ``kept`` (the last fetch's, from the memo),
    patched with the refs :func:`~fleetcd.git.remote.fetch_moved` names as changed since that
    fetch (a stray ref is among them at every fetch: it is written and deleted again each time),
    or built in one pass over the listing (0.2 s at 100,000 robots)."""
    listed = found.hex if isinstance(found, ListedRefs) else {r: str(o) for r, o in found.items()}
    changed = found.changed if isinstance(found, ListedRefs) else None
    if not isinstance(kept, _Partition) or changed is None:
        kept = _Partition()
        reports, desired = kept.reports, kept.desired
        for ref, oid in listed.items():  # one pass, no call per ref: this is the cold path's cost
            if ref.startswith(STATUS_PREFIX):
                reports[ref] = Oid(hex=oid)
            elif ref.startswith(DESIRED_PREFIXES) and ref not in stray:
                desired[ref] = Oid(hex=oid)
    else:
        kept.patched += 1
        for ref in changed | stray:
            kept.put(ref, listed.get(ref), stray)
    return kept


def _stray(
    repo: Repository, found: Mapping[str, Oid], *, local: bool, memo: RefListingMemo | None
) -> list[str]:
    """The mirror's refs under the desired-state prefixes that the server lacks or that are no
    desired-state ref.

    After :func:`~fleetcd.git.remote.fetch_moved` the mirror's refs under those prefixes are the
    server's (it deleted the others): only the names need judging, and ``memo`` keeps the names
    judged well-formed, so a fetch judges the names it has not seen, of those the fetch names as
    changed when it does (a stray ref is written and deleted again at every fetch, so it is among
    them each time). Otherwise one pass over the
    mirror's refs (read from packed-refs and the loose files: iterating 200,000 refs through
    libgit2 took 2.8 s)."""
    if not local:
        return [
            ref
            for ref in read_refs(Path(repo.path), DESIRED_PREFIXES)
            if ref not in found or not is_desired_ref(ref)
        ]
    judged = memo.judged if memo is not None else set()
    changed = found.changed if isinstance(found, ListedRefs) else None
    names = found.keys() if changed is None else {ref for ref in changed if ref in found}
    stray = []
    for ref in names - judged:
        if ref.startswith(DESIRED_PREFIXES) and not is_desired_ref(ref):
            stray.append(ref)
        else:
            judged.add(ref)
    if len(judged) > 2 * len(found) + 1000:  # robots removed: forget their names
        judged.intersection_update(found.keys())
    return sorted(stray)


def _prune(repo: Repository, found: Mapping[str, Oid], prefix: str, url: str) -> None:
    """Delete the mirror's refs under ``prefix`` that the server no longer has (not in ``found``)."""
    gone = {
        ref: Oid(hex=oid) for ref, oid in read_refs(Path(repo.path), (prefix,)).items() if ref not in found
    }
    if gone:
        delete_refs(repo, gone, message=f"fleetcd: deleted on {checked_url(url)}")


def _fetch_libgit2(repo: Repository, source: Source, *, status: bool) -> dict[str, Oid]:
    specs = [
        f"+{MAIN_BRANCH}:{MAIN_BRANCH}",
        f"+{STATE_BRANCH}:{STATE_BRANCH}",
        *([f"+{STATUS_PREFIX}*:{STATUS_PREFIX}*"] if status else []),
        *(f"+{prefix}*:{prefix}*" for prefix in DESIRED_PREFIXES),
    ]
    return fetch_untrusted(
        repo, source.url, specs, credentials=source.credentials, host_keys=source.host_keys
    )


def _pack_mirror_refs(repo: Repository) -> None:
    """The fetch left every ref that moved as a loose file (and a fan-out leaves one per robot);
    every later listing of the mirror walks them, directory by directory. Packing only makes the
    listings fast, so a pack that fails (first packing tens of thousands of loose refs on a busy
    disk took over a minute) is logged and left for the next fetch."""
    try:
        gitcli.pack_refs(Path(repo.path))
    except TransportError as exc:
        log.warning("%s: the mirror's refs were not packed this time: %s", repo.path, exc)


def fetch_state(repo: Repository, source: Source) -> Oid | None:
    """The state branch alone (``audit verify``), force-updated; None when the remote has none."""
    found = fetch(
        repo,
        source.url,
        [f"+{STATE_BRANCH}:{STATE_BRANCH}"],
        credentials=source.credentials,
        host_keys=source.host_keys,
    )
    return found.get(STATE_BRANCH)


# One regular expression per layout, matched in C: the check runs on every desired-state ref of
# the mirror at every fetch (100,000 refs: 0.12 s CPU through device_of_desired_ref and
# is_safe_name, tests/test_reconcile_desired_refs.py holds the two to the same answers).
_SAFE_NAME = SAFE_NAME_PATTERN.removeprefix("^").removesuffix("$")
_FLAT_DESIRED = re.compile(f"{re.escape(DESIRED_PREFIX)}(?P<device>{_SAFE_NAME})")
_NAMESPACED_DESIRED = re.compile(
    f"{re.escape(NAMESPACES_PREFIX)}(?P<device>{_SAFE_NAME})/{re.escape(DESIRED_PREFIX)}(?P=device)"
)


def is_desired_ref(ref: str) -> bool:
    """``refs/fleetcd/desired/<id>``, or that ref inside ``refs/namespaces/<id>/`` (same ``<id>``)."""
    found = _FLAT_DESIRED.fullmatch(ref) or _NAMESPACED_DESIRED.fullmatch(ref)
    return found is not None and len(found["device"]) <= SAFE_NAME_MAX


# A push of N robots' refs makes the server write N loose ref files (four directories each when
# namespaced) and then pack them: at 100,000 robots on a loaded 2-core machine that is minutes, and
# a flat 60 s timeout failed every fan-out there. Each ref gets this much on top.
TRANSFER_SECONDS_PER_REF = 0.01


def transfer_timeout(refs: int) -> float:
    """How long a push (or the packing after it) of ``refs`` desired-state refs may take."""
    return DEFAULT_TIMEOUT_S + TRANSFER_SECONDS_PER_REF * refs


def publish(
    repo: Repository,
    source: Source,
    *,
    state_base: Oid | None,
    desired: Mapping[str, Oid] | None = None,
    namespaces: bool = True,
) -> Repack | None:
    """Push the state branch and, when ``desired`` is given, robots' desired state: one push.

    The state branch goes only if the server still has ``state_base`` (None: no state branch),
    the commit this reconcile built on; losing that race raises PushRejected, retried on the new
    tip. ``desired`` are the refs that moved (pushed one by one where libgit2 pushes).

    After a push by hand into a local server (:mod:`fleetcd.git.localpush`), which leaves one more
    pack there and runs none of receive-pack's ``gc --auto``, the server is housekept
    (:func:`housekeep_repository`); what that did is returned (None: nothing was due).
    """
    lease = {STATE_BRANCH: str(state_base) if state_base is not None else None}
    state = f"{STATE_BRANCH}:{STATE_BRANCH}"
    timeout_s = transfer_timeout(len(desired or {}))
    if is_local(source.url):
        prefix = NAMESPACES_PREFIX if namespaces else DESIRED_PREFIX
        server = _local_path(source.url)
        git_dir = gitcli.git_dir_of(server)
        # Robots' status pushes and a fan-out leave loose ref files, which every idle reconcile's
        # listing would read one by one; packing costs about as much as the loose refs it prunes.
        # By hand, they are packed in the push's own rewrite of packed-refs (one write, not two).
        by_hand = by_hand_pays(git_dir, len(desired or {})) and _push_by_hand(
            repo, source, git_dir, prefix, desired, state_base, timeout_s
        )
        if not by_hand:
            specs = ([f"+{prefix}*:{prefix}*"] if desired else []) + [state]
            push(repo, source.url, specs, leases=lease, atomic=True, timeout_s=timeout_s)
            if loose_refs_at_least(git_dir, PACK_FROM_LOOSE_REFS):
                gitcli.pack_refs(server, timeout_s=timeout_s)
        if by_hand:  # one more pack there, and receive-pack's own gc --auto did not run: ours does
            return housekeep_repository(git_dir, "server", source.housekeeping)
        return None
    push(
        repo,
        source.url,
        [*(f"+{ref}:{ref}" for ref in sorted(desired or {})), state],
        credentials=source.credentials,
        host_keys=source.host_keys,
        leases=lease,
        timeout_s=timeout_s,
    )
    return None


def housekeep_repository(git_dir: Path, repository: str, policy: Policy | None) -> Repack | None:
    """:func:`fleetcd.git.housekeeping.housekeep` of ``git_dir`` (``repository``: "mirror" or
    "server", for logs and metrics), logged; None when nothing was due. A failure (a full disk, a
    timeout) is logged and returned, never raised: the reconcile it follows has done its work, and
    the counts stay over the threshold, so the next reconcile tries again."""
    if policy is None:
        return None
    try:
        done = housekeep(git_dir, policy)
    except (TransportError, SetupError, OSError) as exc:
        log.warning(
            "housekeeping of the %s failed (tried again after the next reconcile): %s", repository, exc
        )
        return Repack(repository, ok=False, message=str(exc))
    if done is None:
        return None
    log.info("housekeeping of the %s: %s", repository, done)
    return Repack(repository, ok=True, message=str(done))


def _push_by_hand(
    repo: Repository,
    source: Source,
    git_dir: Path,
    prefix: str,
    desired: Mapping[str, Oid] | None,
    state_base: Oid | None,
    timeout_s: float,
) -> bool:
    """What the push would do (the wildcard over ``prefix`` when ``desired`` names refs, and the
    state branch), done by hand into a local server that runs no hooks (:mod:`fleetcd.git.localpush`):
    False, having changed nothing, when it must be a real push."""
    why = refused(git_dir, timeout_s=timeout_s)
    if why is not None:
        log.info("pushing to %s through receive-pack: %s", source.url, why)
        return False
    ours = refs_to_send(Path(repo.path), git_dir, prefix, likely=desired) if desired else {}
    refs = {ref: Oid(hex=oid) for ref, oid in ours.items() if is_desired_ref(ref)}
    state = ref_target(repo, STATE_BRANCH)
    if state is not None:
        refs[STATE_BRANCH] = state
    loose = loose_refs(git_dir)  # also removes the ref locks a killed fold left
    fold = loose if len(loose) >= PACK_FROM_LOOSE_REFS else []
    try:
        push_by_hand(repo, git_dir, refs, leases={STATE_BRANCH: state_base}, timeout_s=timeout_s, fold=fold)
    except LocalPushBusy as exc:
        log.info("pushing to %s through receive-pack: %s", source.url, exc)
        return False
    return True


def _local_path(url: str) -> Path:
    return Path(url.removeprefix("file://"))
