"""Digests of ref listings for the idle mark, updated from the refs that changed (issue 12).

The idle check (:mod:`controller.reconcile.idle`) compares digests of robots' status refs and of
the desired-state refs with the ones the last reconcile marked, and the write step marks them
again. A sha256 over the sorted ``ref oid`` lines of 100,000 refs cost 0.07 s per digest, four of
them per reconcile, even when a reconcile ingested 1,000 reports. So the digest is a two-level
Merkle hash: each ref falls in one of :data:`BUCKETS` buckets by a checksum of its name; a
bucket's digest is the sha256 over its sorted ``ref oid`` lines; the digest is the sha256 over
:data:`TAG` and the bucket digests in bucket order. :class:`RefDigest` keeps the bucket digests of
the last listing it saw (``controller run`` keeps one per listing in its
:class:`~controller.reconcile.cache.ReconcileCache`) and hashes again only the buckets holding a
ref that was added, removed or moved; without a memo (``--once``, a restart) every bucket is
hashed, and the digest is the same, since it is a function of the refs alone.

Equal digests mean the same refs at the same objects, as long as sha256 resists collisions: each
bucket's lines parse one way only (ref names hold no space or newline, object ids are hex), and the
top hash reads fixed-size bucket digests in a fixed order. Which bucket a ref falls in only decides
how much is hashed again: a robot grinding names into one bucket slows its own bucket, it cannot
make two listings digest alike (an XOR or sum of per-ref hashes could be forged; this cannot).
Finding what changed is one C-level comparison of the listing with the last one (``dict.items()``
symmetric difference, ~10 ms per 100,000 refs) and Python work per changed ref only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from zlib import crc32

from fleetcd.git.refs import DESIRED_PREFIX, NAMESPACES_PREFIX, STATUS_PREFIX

BUCKETS = 1 << 14  # ~6 refs each at 100,000 robots; the top hash reads 512 KiB
TAG = b"fleetcd refs digest v2\n"  # the scheme's version: a mark from another scheme never matches
DESIRED_PREFIXES = (NAMESPACES_PREFIX, DESIRED_PREFIX)  # both delivery layouts
ALL = ("",)  # every ref of a listing
_EMPTY = hashlib.sha256(b"").digest()


class _Hex(Protocol):
    """A ref's target as a listing holds it: a hex string or a pygit2 Oid (``str`` gives hex)."""

    def __str__(self) -> str: ...


def bucket_of(ref: str) -> int:
    return crc32(ref.encode()) & (BUCKETS - 1)


def _index(refs: Iterable[tuple[str, _Hex]], prefixes: tuple[str, ...]) -> dict[int, dict[str, _Hex]]:
    """The refs under ``prefixes``, by bucket (only buckets holding some)."""
    members: dict[int, dict[str, _Hex]] = {}
    for ref, oid in refs:
        if ref.startswith(prefixes):
            bucket = crc32(ref.encode()) & (BUCKETS - 1)
            try:
                members[bucket][ref] = oid
            except KeyError:
                members[bucket] = {ref: oid}
    return members


def _bucket_hash(members: Mapping[str, _Hex]) -> bytes:
    """sha256 over a bucket's ``ref oid`` lines, sorted by ref."""
    return hashlib.sha256("".join([f"{ref} {members[ref]}\n" for ref in sorted(members)]).encode()).digest()


def _top(buckets: list[bytes]) -> str:
    return hashlib.sha256(TAG + b"".join(buckets)).hexdigest()


class RefDigest:
    """The digest of each of ``groups`` (prefix tuples) of the refs of the last listing digested.

    :meth:`digests` compares a listing with the last one and hashes again the buckets of the refs
    that differ; refs under none of the groups (main, the state branch) are not digested.
    """

    def __init__(self, *groups: tuple[str, ...]) -> None:
        self.groups = groups or (ALL,)
        self._last: dict[str, _Hex] | None = None  # None: nothing digested yet
        self._members: list[dict[int, dict[str, _Hex]]] = [{} for _ in self.groups]
        self._buckets: list[list[bytes]] = [[_EMPTY] * BUCKETS for _ in self.groups]
        self._tops: list[str] = [_top(self._buckets[0])] * len(self.groups)
        self.hashed = 0  # buckets hashed so far (the tests count them)

    def digests(self, refs: Mapping[str, _Hex]) -> tuple[str, ...]:
        """Each group's digest of ``refs`` (any mapping; it is copied, not kept)."""
        # Forgotten while the buckets change: an update cut short (an exception) leaves the next
        # call to hash every bucket again, not to diff against a listing the buckets no longer hold.
        last, self._last = self._last, None
        if last is None:
            for index, prefixes in enumerate(self.groups):
                self._members[index] = members = _index(refs.items(), prefixes)
                self._buckets[index] = [_EMPTY] * BUCKETS
                self._rehash(index, members, top=True)
        else:
            changed = {ref for ref, _ in refs.items() ^ last.items()}
            for index, prefixes in enumerate(self.groups):
                self._rehash(index, self._update(index, prefixes, changed, refs))
        self._last = dict(refs) if last is None or changed else last
        return tuple(self._tops)

    def _update(
        self, index: int, prefixes: tuple[str, ...], changed: set[str], refs: Mapping[str, _Hex]
    ) -> set[int]:
        """The changed refs under ``prefixes`` put in (or out of) their buckets; the buckets touched."""
        members, touched = self._members[index], set()
        for ref in changed:
            if not ref.startswith(prefixes):
                continue
            bucket = bucket_of(ref)
            touched.add(bucket)
            if ref in refs:
                members.setdefault(bucket, {})[ref] = refs[ref]
            elif bucket in members:
                members[bucket].pop(ref, None)
        return touched

    def _rehash(self, index: int, buckets: Collection[int], *, top: bool = False) -> None:
        members, digests, hashed = self._members[index], self._buckets[index], 0
        for bucket in buckets:
            if members.get(bucket):
                digests[bucket] = _bucket_hash(members[bucket])
                hashed += 1
            else:
                members.pop(bucket, None)
                digests[bucket] = _EMPTY
        if buckets or top:
            self._tops[index] = _top(digests)
        self.hashed += hashed


def refs_digest(refs: Mapping[str, _Hex]) -> str:
    """The digest of all of ``refs``, from scratch: what a :class:`RefDigest` gives for them."""
    return RefDigest().digests(refs)[0]


@dataclass
class IdleDigests:
    """What ``controller run`` keeps of the listings the idle mark digests, one :class:`RefDigest`
    each (a listing's values are all hex strings or all Oids, so each compares like with like)."""

    # the idle check's listing of the server: robots' status refs, then the desired-state refs
    listing: RefDigest = field(default_factory=lambda: RefDigest((STATUS_PREFIX,), DESIRED_PREFIXES))
    shards: RefDigest = field(default_factory=RefDigest)  # the idle check's reports located in shards
    status: RefDigest = field(default_factory=RefDigest)  # the write step's mark: the status refs read
    desired: RefDigest = field(default_factory=RefDigest)  # ... and the desired-state refs after delivery
