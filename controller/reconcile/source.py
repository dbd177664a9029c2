"""Where the fleet repository lives: a local bare mirror fetched from and pushed to ``--repo URL``.

Every URL pygit2 reaches works (a local path, ``file://``, ``ssh://``). The mirror is a cache: it
can be deleted at any moment; the remote is the truth. Writes are pushed in a fixed order —
per-robot desired state first, the state branch last — so a crash in between leaves a state branch
that still says "not delivered yet" and the next reconcile delivers again.

The mirror also mirrors the server's desired-state refs (pruning those the server lacks): a
controller killed after moving them locally but before pushing them must see what robots can
actually fetch, not its own unpushed refs, or it would decide that nothing is left to deliver.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fleetcd.errors import SetupError
from fleetcd.git.hostkeys import HostKeyPolicy
from fleetcd.git.refs import DESIRED_PREFIX, MAIN_BRANCH, NAMESPACES_PREFIX, STATE_BRANCH, STATUS_PREFIX
from fleetcd.git.remote import SshKey, fetch, push
from fleetcd.git.repo import Oid, Repository, open_or_init_bare

DESIRED_REFS_PER_PUSH = 1000  # refspecs per push command: bounds argv and server-side batch size
DESIRED_PREFIXES = (NAMESPACES_PREFIX, DESIRED_PREFIX)  # both delivery layouts (namespaced or flat)


@dataclass(frozen=True)
class Source:
    url: str
    mirror: Path
    credentials: SshKey | None = None
    host_keys: HostKeyPolicy | None = None

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
    status: Mapping[str, Oid]  # status ref -> commit


def open_mirror(source: Source) -> Repository:
    return open_or_init_bare(source.mirror)


def fetch_all(repo: Repository, source: Source) -> Fetched:
    """Main, the state branch, every robot's status and desired-state ref, force-updated from the
    remote; desired-state refs the remote lacks are deleted from the mirror."""
    found = fetch(
        repo,
        source.url,
        [
            f"+{MAIN_BRANCH}:{MAIN_BRANCH}",
            f"+{STATE_BRANCH}:{STATE_BRANCH}",
            f"+{STATUS_PREFIX}*:{STATUS_PREFIX}*",
            *(f"+{prefix}*:{prefix}*" for prefix in DESIRED_PREFIXES),
        ],
        credentials=source.credentials,
        host_keys=source.host_keys,
    )
    main = found.get(MAIN_BRANCH)
    if main is None:
        raise SetupError(f"{source.url}: has no {MAIN_BRANCH}")
    if STATE_BRANCH not in found and repo.references.get(STATE_BRANCH) is not None:
        repo.references.delete(STATE_BRANCH)  # the remote has none: ours is a stale cache
    # Written here, never pushed (a crash in between). One pass over the names, no targets read.
    unpushed = [ref for ref in repo.references if ref.startswith(DESIRED_PREFIXES) and ref not in found]
    for ref in unpushed:
        repo.references.delete(ref)
    status = {ref: oid for ref, oid in found.items() if ref.startswith(STATUS_PREFIX)}
    return Fetched(main=main, state=found.get(STATE_BRANCH), status=status)


def push_desired(repo: Repository, source: Source, refs: Mapping[str, Oid]) -> None:
    """Force-push per-robot desired-state refs (each is a fresh, parentless, deterministic commit)."""
    names = sorted(refs)
    for start in range(0, len(names), DESIRED_REFS_PER_PUSH):
        chunk = names[start : start + DESIRED_REFS_PER_PUSH]
        push(
            repo,
            source.url,
            [f"+{ref}:{ref}" for ref in chunk],
            credentials=source.credentials,
            host_keys=source.host_keys,
        )


def push_state(repo: Repository, source: Source) -> None:
    """Push the state branch without force: losing a race is a rejection, retried on the new tip."""
    push(
        repo,
        source.url,
        [f"{STATE_BRANCH}:{STATE_BRANCH}"],
        credentials=source.credentials,
        host_keys=source.host_keys,
    )
