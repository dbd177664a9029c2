"""Digests of ref listings for the idle mark, updated from the refs that changed (issue 12).

The idle check (:mod:`controller.reconcile.idle`) compares digests of robots' status refs and of
the desired-state refs with the ones the last reconcile marked, and the write step marks them
again. A sha256 over the sorted ``ref oid`` lines of 100,000 refs cost 0.07 s per digest, four of
them per reconcile, even when a reconcile ingested 1,000 reports. So the digest is a two-level
Merkle hash over chunks of the sorted listing: a ref whose name's crc32 is a multiple of
:data:`CUT` ends its chunk (the last chunk runs to the end of the listing, and may be empty); a
chunk's digest is the sha256 over its ``ref oid`` lines in name order; the digest is the sha256
over :data:`TAG` and the chunk digests in order. :class:`RefDigest` keeps the chunks of the last
listing it saw (``controller run`` keeps one per listing in its
:class:`~controller.reconcile.cache.ReconcileCache`) and hashes again only the chunks holding a
ref that was added, removed or moved (a ref added or removed that ends a chunk splits or joins
two); without a memo (``--once``, a restart) every chunk is hashed, and the digest is the same,
since it is a function of the refs alone. A digest from scratch walks the listing in name order
once, its per-ref work mapped in C and one join and hash per chunk of ~:data:`CUT` refs: about the
cost of the single sorted sha256 it replaced (the 16,384 crc32 buckets of v2 cost 2-5x that: a
hash call per bucket of a few refs, and the listing gathered out of order).

Equal digests mean the same refs at the same objects, as long as sha256 resists collisions: each
chunk's lines parse one way only (ref names hold no space or newline, object ids are hex), the top
hash reads fixed-size chunk digests, and the chunks in order are the listing's lines in order.
Where the chunks end only decides how much is hashed again: a robot grinding names that end no
chunk lengthens the chunk its names fall in, it cannot make two listings digest alike (an XOR or
sum of per-ref hashes could be forged; this cannot). Finding what changed is one C-level
comparison of the listing with the last one (``dict.items()`` symmetric difference, ~10 ms per
100,000 refs) and Python work per changed ref only.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain, compress, filterfalse, repeat
from operator import and_, methodcaller, not_
from typing import Protocol
from zlib import crc32

from fleetcd.git.refs import DESIRED_PREFIX, NAMESPACES_PREFIX, STATUS_PREFIX

CUT = 8  # a ref ends its chunk when crc32 of its name is a multiple of this: ~8 refs a chunk
TAG = b"fleetcd refs digest v3\n"  # the scheme's version: a mark from another scheme never matches
DESIRED_PREFIXES = (NAMESPACES_PREFIX, DESIRED_PREFIX)  # both delivery layouts
ALL = ("",)  # every ref of a listing
_FEW = 16  # refs added or removed at once that are put in place one by one, not merged in
_DIGEST = methodcaller("digest")


class _Hex(Protocol):
    """A ref's target as a listing holds it: a hex string or a pygit2 Oid (``str`` gives hex)."""

    def __str__(self) -> str: ...


def is_cut(ref: str) -> bool:
    """Whether ``ref`` ends its chunk."""
    return crc32(ref.encode()) & (CUT - 1) == 0


def _under(names: list[str], prefixes: tuple[str, ...]) -> list[str]:
    """The names of the sorted ``names`` that start with one of ``prefixes``, in order: each
    prefix's names are one run of the sorted list, found by bisection, not by a test of each name."""
    if "" in prefixes:
        return names
    runs = sorted((bisect_left(names, p), bisect_left(names, p[:-1] + chr(ord(p[-1]) + 1))) for p in prefixes)
    found: list[str] = []
    end = 0
    for low, high in runs:
        if high > max(low, end):  # a prefix under another: its run is within the other's
            found.extend(names[max(low, end) : high])
        end = max(end, high)
    return found


def _chunk_hash(names: list[str], refs: Mapping[str, _Hex]) -> bytes:
    return hashlib.sha256(
        "".join(
            [f"{ref} {oid}\n" for ref, oid in zip(names, map(refs.__getitem__, names), strict=True)]
        ).encode()
    ).digest()


def _from_scratch(names: list[str], refs: Mapping[str, _Hex]) -> tuple[list[str], list[bytes]]:
    """The chunks of the sorted ``names``: the refs that end one, and every chunk's digest (the
    last one's after the last cut), each ref's line made and each chunk joined and hashed in C."""
    ends = list(map(not_, map(and_, map(crc32, map(str.encode, names)), repeat(CUT - 1))))
    cuts = list(compress(names, ends))
    stops = [i + 1 for i in compress(range(len(names)), ends)]
    stops.append(len(names))
    lines = [f"{ref} {oid}\n" for ref, oid in zip(names, map(refs.__getitem__, names), strict=True)]
    texts = map("".join, map(lines.__getitem__, map(slice, [0, *stops[:-1]], stops)))
    return cuts, list(map(_DIGEST, map(hashlib.sha256, map(str.encode, texts))))


def _top(chunks: Iterable[bytes]) -> str:
    return hashlib.sha256(TAG + b"".join(chunks)).hexdigest()


def _merged(names: list[str], added: list[str], removed: set[str]) -> list[str]:
    """``names`` (sorted) with ``added`` put in and ``removed`` taken out, in order."""
    if len(added) + len(removed) <= _FEW:  # edited in place
        for ref in removed:
            at = bisect_left(names, ref)
            if at < len(names) and names[at] == ref:
                del names[at]
        for ref in added:
            at = bisect_left(names, ref)
            if at == len(names) or names[at] != ref:
                names.insert(at, ref)
        return names
    return sorted(chain(filterfalse(removed.__contains__, names), added))  # a sorted run and a few


class RefDigest:
    """The digest of each of ``groups`` (prefix tuples) of the refs of the last listing digested.

    :meth:`digests` compares a listing with the last one and hashes again the chunks of the refs
    that differ; refs under none of the groups (main, the state branch) are not digested.
    """

    def __init__(self, *groups: tuple[str, ...]) -> None:
        self.groups = groups or (ALL,)
        self._last: dict[str, _Hex] | None = None  # None: nothing digested yet
        self._names: list[list[str]] = [[] for _ in self.groups]  # each group's refs, sorted
        self._cuts: list[list[str]] = [[] for _ in self.groups]  # ... those that end a chunk
        # each chunk's digest by the ref that ends it (None: the last chunk)
        self._chunks: list[dict[str | None, bytes]] = [{} for _ in self.groups]
        self._tops: list[str] = [""] * len(self.groups)
        self.hashed = 0  # chunks hashed so far (the tests count them)

    def digests(self, refs: Mapping[str, _Hex]) -> tuple[str, ...]:
        """Each group's digest of ``refs`` (any mapping; it is copied, not kept)."""
        # Forgotten while the chunks change: an update cut short (an exception) leaves the next
        # call to hash every chunk again, not to diff against a listing the chunks no longer hold.
        last, self._last = self._last, None
        if last is None:
            names = sorted(refs)
            for index, prefixes in enumerate(self.groups):
                mine = _under(names, prefixes)
                cuts, chunks = _from_scratch(mine, refs)
                self._names[index], self._cuts[index] = mine, cuts
                self._chunks[index] = dict(zip([*cuts, None], chunks, strict=True))
                self._tops[index] = _top(chunks)
                self.hashed += len(chunks)
        else:
            changed = {ref for ref, _ in refs.items() ^ last.items()}
            for index, prefixes in enumerate(self.groups):
                mine = [ref for ref in changed if ref.startswith(prefixes)]
                if mine:
                    self._update(index, mine, refs, last)
        self._last = dict(refs) if last is None or changed else last
        return tuple(self._tops)

    def _update(
        self, index: int, changed: list[str], refs: Mapping[str, _Hex], last: Mapping[str, _Hex]
    ) -> None:
        """The changed refs of group ``index`` put in (or out of) the sorted names and the cuts,
        then every chunk holding one (or split or joined at one) hashed again."""
        added = [ref for ref in changed if ref not in last]
        removed = {ref for ref in changed if ref not in refs}
        names, cuts, chunks = self._names[index], self._cuts[index], self._chunks[index]
        if added or removed:
            self._names[index] = names = _merged(names, added, removed)
            self._cuts[index] = cuts = _merged(
                cuts, [r for r in added if is_cut(r)], {r for r in removed if is_cut(r)}
            )
            for ref in removed:
                chunks.pop(ref, None)
        dirty: set[str | None] = set()
        for ref in changed:  # the chunk that holds (or held) it, and the one after it if it ends one
            at = bisect_left(cuts, ref)
            dirty.add(cuts[at] if at < len(cuts) else None)
            if is_cut(ref):
                after = bisect_right(cuts, ref)
                dirty.add(cuts[after] if after < len(cuts) else None)
        for key in dirty:
            at = bisect_left(cuts, key) if key is not None else len(cuts)
            low = bisect_right(names, cuts[at - 1]) if at else 0
            high = bisect_right(names, key) if key is not None else len(names)
            chunks[key] = _chunk_hash(names[low:high], refs)
        self.hashed += len(dirty)
        self._tops[index] = _top(chain(map(chunks.__getitem__, cuts), (chunks[None],)))


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
