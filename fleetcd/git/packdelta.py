"""git's delta format, written cheaply: one object as copies from a similar one plus new bytes.

:mod:`fleetcd.git.packfile` stores an object as a delta against an earlier one of the same type
when that is much smaller. Robots' bundles differ from each other in a few short places (ids,
the device name) and share the rest (the release, the rollout, their signatures), so a delta of
a 6 KB bundle against another robot's is ~150 bytes.

The matching is divide and conquer on whole slices, done by C code: the common prefix and suffix
of the two (bisected with slice comparisons), then, for what differs in between, a short anchor
from the middle of the target looked up in the base (``bytes.find``) splits the problem in two.
It finds the few long runs such objects share; it is not a general diff (a miss only costs bytes).
Where what is left of the two has one length (the usual case for two robots' files: ids, hashes
and times differ, each by a string of the same length), the bytes are compared all at once
instead: the two as integers XORed, and every run of zero bytes in the result is a copy (one
regular-expression scan in C). On a 10,000-robot fan-out's state files that took the deltas from
116 to 25 µs each (tests/test_git_packfile.py reads them back through git).

The format (git's ``patch-delta.c``): the base's size and the result's size as little-endian
base-128 numbers, then instructions: ``1xxxxxxx`` copies from the base (the low 4 bits say which
offset bytes follow, the next 3 which size bytes), ``0nnnnnnn`` (1..127) inserts the next n bytes.
"""

from __future__ import annotations

import re

_ANCHOR = 16  # bytes looked up in the base: long enough to be unique in a bundle
_MIN_COPY = 8  # a shorter match is cheaper inserted (a copy instruction is up to 8 bytes)
_MAX_SPLITS = 64  # anchors looked up per object: a bundle needs a handful; repetitive data far more
_MAX_COPY = 0x10000  # git writes no longer copy (its decoder reads a size of 0 as 0x10000)
_MAX_INSERT = 0x7F
# In an XOR of two strings: where they agree. Spelled as a literal prefix, which the regular
# expression engine searches for like bytes.find: 8.5 µs over 27 KB of XOR of two unrelated trees
# (the state branch's bucket trees, tried as deltas of each other) against 194 µs as
# ``\x00{8,}``, which tries a match at every byte; the same runs.
_SAME_BYTES = re.compile(b"\\x00" * _MIN_COPY + b"\\x00*")
# The common prefix and suffix are looked for in windows from this size on, each 4 times the last:
# two unrelated objects of 27 KB were converted whole to integers to find a prefix of a few bytes.
_FIRST_WINDOW = 256


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _common_prefix(a: bytes, a0: int, a1: int, b: bytes, b0: int, b1: int) -> int:
    """How many bytes a[a0:a1] and b[b0:b1] share at their start: where the XOR of the two (as
    big-endian integers of one length) has its highest bit set, window after growing window."""
    size, done, window = min(a1 - a0, b1 - b0), 0, _FIRST_WINDOW
    while done < size:
        end = min(size, done + window)
        differ = int.from_bytes(a[a0 + done : a0 + end], "big") ^ int.from_bytes(
            b[b0 + done : b0 + end], "big"
        )
        if differ:
            return end - 1 - (differ.bit_length() - 1) // 8
        done, window = end, window * 4
    return size


def _common_suffix(a: bytes, a0: int, a1: int, b: bytes, b0: int, b1: int) -> int:
    """How many bytes a[a0:a1] and b[b0:b1] share at their end (the same, little-endian, windows
    from the end)."""
    size, done, window = min(a1 - a0, b1 - b0), 0, _FIRST_WINDOW
    while done < size:
        end = min(size, done + window)
        differ = int.from_bytes(a[a1 - end : a1 - done], "little") ^ int.from_bytes(
            b[b1 - end : b1 - done], "little"
        )
        if differ:
            return end - 1 - (differ.bit_length() - 1) // 8
        done, window = end, window * 4
    return size


def _match(
    base: bytes,
    b0: int,
    b1: int,
    target: bytes,
    t0: int,
    t1: int,
    budget: list[int],
    out: list[tuple[int, int, int]],
) -> None:
    """Append (target offset, base offset, length) runs of target[t0:t1] found in base[b0:b1],
    in target order and not overlapping. ``budget``: the anchors still to look up, and how many
    of the target's bytes the runs must cover for the delta to be kept."""
    prefix = _common_prefix(base, b0, b1, target, t0, t1)
    suffix = _common_suffix(base, b0 + prefix, b1, target, t0 + prefix, t1)
    if prefix:
        out.append((t0, b0, prefix))
    ts, te, bs, be = t0 + prefix, t1 - suffix, b0 + prefix, b1 - suffix
    if te - ts == be - bs and te - ts >= _MIN_COPY:
        _aligned(base, bs, be, target, ts, te, out, budget[1] - (len(target) - (te - ts)))
    elif te - ts >= 2 * _ANCHOR and be - bs >= _ANCHOR:
        for at in (ts + (te - ts) // 2, ts + (te - ts) // 4, ts + 3 * (te - ts) // 4):
            if budget[0] <= 0:
                break
            budget[0] -= 1
            anchor = target[at : at + _ANCHOR]
            # Similar objects mostly line up: the occurrence near the same offset comes first.
            found = base.find(anchor, max(bs, bs + (at - ts) - _ANCHOR), be)
            if found < 0:
                found = base.find(anchor, bs, be)
            if found >= 0:
                _match(base, bs, found, target, ts, at, budget, out)
                _match(base, found, be, target, at, te, budget, out)
                break
    if suffix:
        out.append((te, be, suffix))


def _aligned(
    base: bytes,
    b0: int,
    b1: int,
    target: bytes,
    t0: int,
    t1: int,
    out: list[tuple[int, int, int]],
    least: int = 0,
) -> None:
    """Append the runs where target[t0:t1] and base[b0:b1] (one length) hold the same bytes at the
    same offsets, in target order: the zero bytes of their XOR. None when fewer than ``least``
    bytes agree at all (counted in C): the runs could not make the delta worth keeping, and
    listing them was a Python step per entry of two unrelated trees whose names line up."""
    size = t1 - t0
    same = int.from_bytes(base[b0:b1], "big") ^ int.from_bytes(target[t0:t1], "big")
    xored = same.to_bytes(size, "big")
    if least > 0 and xored.count(0) < least:
        return
    for run in _SAME_BYTES.finditer(xored):
        start, end = run.span()
        out.append((t0 + start, b0 + start, end - start))


def delta(base: bytes, target: bytes, max_new: int) -> bytes | None:
    """``target`` as git delta instructions against ``base``; None when more than ``max_new`` of
    its bytes are not found in ``base`` (the delta would not be worth it)."""
    runs: list[tuple[int, int, int]] = []
    # The runs must cover this much of the target, or the delta is refused below; a region
    # whose bytes cannot bring the runs there is not listed (the answer, None, is the same).
    need = len(target) - max_new
    _match(base, 0, len(base), target, 0, len(target), [_MAX_SPLITS, need], runs)
    if len(target) - sum(length for _, _, length in runs if length >= _MIN_COPY) > max_new:
        return None
    ops = [_varint(len(base)), _varint(len(target))]
    at = 0
    for t_start, b_start, length in runs:
        if length < _MIN_COPY or t_start < at:
            continue  # left to the insert before the next copy
        _insert(ops, target, at, t_start)
        _copy(ops, b_start, length)
        at = t_start + length
    _insert(ops, target, at, len(target))
    return b"".join(ops)


def _insert(ops: list[bytes], target: bytes, start: int, end: int) -> None:
    for chunk in range(start, end, _MAX_INSERT):
        piece = target[chunk : min(chunk + _MAX_INSERT, end)]
        ops.append(bytes((len(piece),)) + piece)


def _copy(ops: list[bytes], offset: int, length: int) -> None:
    while length:
        size = min(length, _MAX_COPY)
        where, much = offset.to_bytes(4, "little"), size.to_bytes(3, "little")
        command = 0x80
        for bit, byte in enumerate(where + much):  # a flag per offset and size byte sent (non-zero)
            if byte:
                command |= 1 << bit
        ops.append(bytes((command,)) + (where + much).replace(b"\0", b""))
        offset += size
        length -= size
