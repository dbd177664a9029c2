"""Signed audit heads: the controller key vouches for where the log ended (pure: bytes in and out).

The hash chain (:mod:`controller.audit.chain`) catches any edit *inside* the log, but whoever can
push to the state branch can rewrite the whole log consistently (every hash recomputed) and it
still verifies. So every reconcile that appends lines also writes, in the same state commit::

    audit-heads/YYYY/MM/DD/<seq>.json      {"at":...,"file":...,"head":...,"kind":...,"seq":N}
    audit-heads/YYYY/MM/DD/<seq>.json.asc  the controller key's detached signature over it

(``YYYY/MM/DD`` is the UTC day of the head's day file; ``seq`` is the line count.) Heads are never
rewritten or deleted, so each appending reconcile leaves one signed head. :func:`check_heads`
demands that

1. every head checked parses, sits at its own path, and is signed by a controller key;
2. the chain's line ``seq`` hashes to the signed ``head`` (a consistent rewrite breaks the first
   head after the rewritten line: that head is named);
3. heads grow: seq and time never go backwards;
4. the newest head is exactly the log's end: unsigned lines after it (appended by someone without
   the key) and a log cut back below a signed head are both refused.

Which keys count is the caller's (``fleetcd audit verify`` takes the controller keys of every
verified trust-root version on main). Heads at or below ``after`` (the head a ``--since-anchor``
check starts from, verified before) are not read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from controller.audit.events import canonical_json
from controller.audit.lines import DAY_PATH
from controller.errors import AuditChainBroken

HEADS_DIR = "audit-heads/"
HEAD_PATH = re.compile(r"^audit-heads/([0-9]{4})/([0-9]{2})/([0-9]{2})/([1-9][0-9]{0,11})\.json$")
MAX_HEAD_BYTES = 1024
MAX_SIGNATURE_BYTES = 16 * 1024

# (document bytes, signature bytes) -> None when a controller key signed them, else why not
SignatureCheck = Callable[[bytes, bytes], "str | None"]


class SignedHead(BaseModel):
    """What one signed head says: the log had ``seq`` lines, the last one hashing to ``head``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["fleetcd-audit-head-v1"] = "fleetcd-audit-head-v1"
    seq: int = Field(ge=1)
    head: str = Field(pattern=r"^[0-9a-f]{64}$")
    file: str = Field(pattern=DAY_PATH.pattern)  # the day file holding line ``seq``
    at: AwareDatetime  # when the controller signed it


@dataclass(frozen=True)
class HeadReport:
    """The newest signed head (0: none) and how many heads were read and checked."""

    signed_seq: int
    checked: int


def head_path(seq: int, file: str) -> str:
    """``audit-heads/YYYY/MM/DD/<seq>.json`` for a head in day file ``file``."""
    day = file.removeprefix("audit/").removesuffix(".jsonl")
    return f"{HEADS_DIR}{day}/{seq}.json"


def head_document(seq: int, head: str, file: str, at: datetime) -> bytes:
    """The one byte form of a head document (canonical JSON), the bytes the controller signs."""
    doc = SignedHead(seq=seq, head=head, file=file, at=at)
    return canonical_json(doc.model_dump(mode="json"))


def head_files(
    seq: int, head: str, file: str, at: datetime, sign: Callable[[bytes], bytes]
) -> dict[str, bytes]:
    """The two files that sign the head ``(seq, head)`` of day file ``file``: document and signature."""
    path = head_path(seq, file)
    document = head_document(seq, head, file, at)
    return {path: document, f"{path}.asc": sign(document)}


def head_seqs(paths: Iterable[str], *, after: int = 0) -> list[int]:
    """The seqs of the head documents among ``paths`` (above ``after``), ascending; from names only."""
    matches = (HEAD_PATH.fullmatch(path) for path in paths)
    return sorted(int(m[4]) for m in matches if m is not None and int(m[4]) > after)


def is_newer_head_file(path: str, after: int) -> bool:
    """``path`` is a head document or its signature for a seq above ``after`` (or not a head at all)."""
    match = HEAD_PATH.fullmatch(path.removesuffix(".asc"))
    return match is None or int(match[4]) > after


def check_heads(
    files: Mapping[str, bytes],
    hashes: Mapping[int, str],
    end: tuple[int, str],
    signed: SignatureCheck,
    *,
    after: int = 0,
) -> HeadReport:
    """Check the heads in ``files`` above seq ``after`` against the chain (the module docstring).

    ``hashes`` maps each such head's seq to the chain's line hash there (missing: the log has no such
    line); ``end`` is the log's (last seq, its hash). Raises :class:`AuditChainBroken` naming the
    first head that fails, or the log's end when no signed head covers it.
    """
    stray = sorted(p for p in files if not HEAD_PATH.fullmatch(p) and not _signature_of_head(p))
    if stray:
        raise AuditChainBroken(stray[0], None, "not a signed audit head (audit-heads/YYYY/MM/DD/<seq>.json)")
    by_seq: dict[int, str] = {}
    for path in files:
        match = HEAD_PATH.fullmatch(path)
        if match is not None:
            seq = int(match[4])
            if seq in by_seq:
                raise AuditChainBroken(path, None, f"a second signed head for seq {seq} ({by_seq[seq]})")
            by_seq[seq] = path
    newest, last_at, checked = after, None, 0
    for seq in sorted(s for s in by_seq if s > after):
        path = by_seq[seq]
        head = _parse(path, files[path], seq)
        signature = files.get(f"{path}.asc")
        if signature is None:
            raise AuditChainBroken(path, None, f"head seq {seq} is unsigned (no {path}.asc)")
        if len(signature) > MAX_SIGNATURE_BYTES:
            raise AuditChainBroken(f"{path}.asc", None, f"signature over {MAX_SIGNATURE_BYTES} bytes")
        problem = signed(files[path], signature)
        if problem is not None:
            raise AuditChainBroken(
                f"{path}.asc", None, f"head seq {seq} is not signed by a controller key: {problem}"
            )
        if last_at is not None and head.at < last_at:
            raise AuditChainBroken(
                path, None, f"head seq {seq} is signed before the head below it: heads go back"
            )
        if seq > end[0]:
            problem = (
                f"the log ends at seq {end[0]} but head seq {seq} was signed: lines were cut from the end"
            )
            raise AuditChainBroken(path, None, problem, expected=str(seq), found=str(end[0]))
        if head.file != _day_of(path) or hashes.get(seq) != head.head:
            problem = f"the chain's line {seq} is not the one the controller signed: the log was rewritten"
            raise AuditChainBroken(path, None, problem, expected=head.head, found=hashes.get(seq))
        newest, last_at, checked = seq, head.at, checked + 1
    if end[0] > newest:
        problem = (
            f"lines {newest + 1}..{end[0]} are covered by no signed head: appended without the "
            "controller key, or a rewrite dropped the heads"
        )
        raise AuditChainBroken(
            HEADS_DIR, None, problem, expected=f"a head for seq {end[0]}", found=str(newest)
        )
    return HeadReport(signed_seq=newest, checked=checked)


def _signature_of_head(path: str) -> bool:
    return path.endswith(".json.asc") and HEAD_PATH.fullmatch(path.removesuffix(".asc")) is not None


def _day_of(path: str) -> str:
    match = HEAD_PATH.fullmatch(path)
    assert match is not None
    return f"audit/{match[1]}/{match[2]}/{match[3]}.jsonl"


def _parse(path: str, data: bytes, seq: int) -> SignedHead:
    if len(data) > MAX_HEAD_BYTES:
        raise AuditChainBroken(path, None, f"head document over {MAX_HEAD_BYTES} bytes")
    try:
        head = SignedHead.model_validate_json(data)
    except ValidationError as exc:
        raise AuditChainBroken(path, None, f"not a signed audit head: {exc.errors()[0]['msg']}") from None
    if head.seq != seq:
        raise AuditChainBroken(path, None, f"says seq {head.seq} at the path of seq {seq}")
    return head
