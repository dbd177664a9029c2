"""The idle fast path, before step 1 of a reconcile: decide from a ref listing that nothing is new.

An idle 10,000-robot fleet would otherwise pay, every tick, for fetching every robot's refs,
reading and validating every device file on main and on the state branch and planning every
rollout, only to write nothing. So each full reconcile leaves an
:class:`~controller.state.model.IdleMark` — main, digests of the status and desired-state refs, and
:func:`~controller.reconcile.due.next_due` — in ``state.json`` when it commits, and in a hint file
in the mirror (keyed by the state commit it read) when it has nothing to commit.

The next reconcile lists the server's refs without fetching (:func:`idle_main`) and stops at once
when main and both ref digests are exactly as marked, ``now`` is before ``next_due_at``, the
audit log still ends at the anchor ``state.json`` records and no webhook delivery is pending. A
stalled main leaves a mark that compares main alone (:mod:`controller.reconcile.stall`). Anything else — a new
commit, a report, a deadline or window reached, a damaged log tail, no hint — runs the full
reconcile, which verifies the whole audit chain against that anchor. The fast path writes nothing,
so skipping work there can delay a decision (never past ``next_due_at``) but never make a wrong one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from controller.audit.chain import DAY_PATH, head, line_hash
from controller.reconcile.due import FULL_RECONCILE_EVERY
from controller.reconcile.refdigest import DESIRED_PREFIXES, IdleDigests, RefDigest
from controller.reconcile.shards import StatusShard, list_shards, locate
from controller.reconcile.source import Source
from controller.state.layout import META_FILE, OUTBOX_FILE
from controller.state.model import ControllerMeta, IdleMark
from fleetcd.git.gitcli import git_dir_of, is_local, local_path
from fleetcd.git.mirror import replace_file
from fleetcd.git.objects import read_blob
from fleetcd.git.packedrefs import read_ref_storage
from fleetcd.git.reflisting import RefListingMemo
from fleetcd.git.refs import MAIN_BRANCH, STATE_BRANCH, STATUS_PREFIX
from fleetcd.git.remote import list_remote
from fleetcd.git.repo import Oid, Repository

log = logging.getLogger("fleetcd.controller")
LISTED = (MAIN_BRANCH, STATE_BRANCH, STATUS_PREFIX, *DESIRED_PREFIXES)
HINT_FILE = "fleetcd-idle.json"  # in the mirror, which is a cache: losing it costs one full reconcile
LISTING_FILE = "fleetcd-listing.json"  # the last listing of a local server, with its refs' fingerprint
# The kept listing's digests' scheme, in its key: a listing kept by an older controller is not read
# (its digests would never equal a new mark, and the same ref bytes would keep it forever).
DIGESTS = "chunked-v3"


class _Hint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    state_commit: str
    mark: IdleMark


@dataclass(frozen=True)
class Idle:
    """A full reconcile would decide nothing new: main's commit, and why it stalls if it does."""

    main: str
    stalled: str | None = None


def idle_main(
    repo: Repository,
    source: Source,
    now: datetime,
    *,
    outbox: bool = True,
    shards: Sequence[StatusShard] = (),
    memo: RefListingMemo | None = None,
    digests: IdleDigests | None = None,
) -> Idle | None:
    """What the server shows when a full reconcile at ``now`` would decide nothing new, else None.

    With ``outbox``, webhook deliveries still pending on the state branch need the full path (it
    delivers them and records the outcome), except while main stalls (those wait for a new main).
    With ``shards``, robots' reports are listed there (:func:`controller.reconcile.shards.list_shards`)
    and located as the full reconcile locates them. ``digests``: ``controller run``'s digests of the
    last listings (:mod:`controller.reconcile.refdigest`), updated from the refs that changed.
    """
    listing = _listing(repo, source, with_status=not shards, memo=memo, digests=digests)
    if listing.main is None or listing.state is None:
        return None
    main, state = listing.main, Oid(hex=listing.state)
    meta = _meta(repo, state)
    if meta is None:
        return None
    mark = _read_hint(source.mirror, str(state)) or meta.idle
    # A mark further ahead than any reconcile sets (the clock stepped back, or someone else wrote
    # it) is not trusted to keep this controller idle.
    if mark is None or not now < mark.next_due_at <= now + FULL_RECONCILE_EVERY:
        return None
    if mark.stalled:
        same = mark.main == str(main)  # nothing else is read while main stalls
    else:
        if shards:
            located = locate(list_shards(repo, shards)).marked
            status = (digests.shards if digests is not None else RefDigest()).digests(located)[0]
        else:
            status = listing.status_sha256
        now_mark = IdleMark(
            main=str(main),
            status_sha256=status,
            desired_sha256=listing.desired_sha256 if mark.desired_sha256 is not None else None,
            next_due_at=mark.next_due_at,
        )
        same = now_mark == mark and not (outbox and read_blob(repo, state, OUTBOX_FILE) is not None)
    if not same or not _audit_head_matches(repo, state, meta):
        return None
    return Idle(str(main), meta.stalled_reason if mark.stalled else None)


class _Listing(BaseModel):
    """What the idle check needs from the server's refs: main, the state branch, the digests."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    main: str | None
    state: str | None
    desired_sha256: str
    status_sha256: str


class _KeptListing(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fingerprint: str
    listing: _Listing


def _listing(
    repo: Repository,
    source: Source,
    *,
    with_status: bool,
    memo: RefListingMemo | None = None,
    digests: IdleDigests | None = None,
) -> _Listing:
    """The server's refs as the idle check compares them.

    Listing 200,000 refs (100,000 robots) with ``git ls-remote`` took 4.5 s at load 11 and the
    digests 0.8 s more: far over an idle reconcile's budget. A local server's refs are read from
    the bytes that store them instead (:func:`fleetcd.git.packedrefs.read_ref_storage`, ~30 ms),
    and the listing made from those bytes is kept in the mirror (:data:`LISTING_FILE`) under their
    digest: while the bytes are the same, so are the refs, and the kept listing is used as is.
    When they changed, ``controller run``'s reader of the server's refs (``memo``, the one the
    fetch uses: :mod:`fleetcd.git.reflisting`) parses only the lines of ``packed-refs`` that
    changed, and the fetch that follows parses nothing. The digests are updated from the refs that
    changed since ``digests`` last saw the listing (all of them without ``digests``).
    """
    names = tuple(name for name in LISTED if with_status or name != STATUS_PREFIX)
    git_dir = _local_git_dir(source.url)
    storage = read_ref_storage(git_dir) if git_dir is not None else None
    if storage is None:
        listed = list_remote(
            repo, source.url, names, credentials=source.credentials, host_keys=source.host_keys
        )
        return _listing_of({ref: str(oid) for ref, oid in listed.items()}, digests)
    key = f"{DIGESTS}:{with_status}:{storage.fingerprint}"
    kept = _read_listing(source.mirror)
    if kept is not None and kept.fingerprint == key:
        return kept.listing
    parsed = (
        storage.refs(names)
        if memo is None
        else memo.server_reader(names).from_bytes(storage.packed, storage.loose)
    )
    listing = _listing_of(parsed, digests)
    _keep(source.mirror, LISTING_FILE, _KeptListing(fingerprint=key, listing=listing))
    return listing


def _listing_of(listed: Mapping[str, str], digests: IdleDigests | None) -> _Listing:
    status, desired = (digests.listing if digests is not None else IdleDigests().listing).digests(listed)
    main, state = listed.get(MAIN_BRANCH), listed.get(STATE_BRANCH)
    return _Listing(main=main, state=state, desired_sha256=desired, status_sha256=status)


def _local_git_dir(url: str) -> Path | None:
    if not is_local(url):
        return None
    git_dir = git_dir_of(local_path(url))
    return git_dir if (git_dir / "refs").is_dir() else None


def _read_listing(mirror: Path) -> _KeptListing | None:
    try:
        return _KeptListing.model_validate_json((mirror / LISTING_FILE).read_bytes())
    except (OSError, ValidationError):
        return None


def mark_of(
    main: str,
    status: Mapping[str, Oid],
    desired: Mapping[str, Oid] | None,
    next_due_at: datetime,
    digests: IdleDigests | None = None,
) -> IdleMark:
    """The mark of a reconcile that read ``status`` and left ``desired`` on the server;
    ``digests``: ``controller run``'s, updated from the refs that changed since the last mark."""
    kept = digests if digests is not None else IdleDigests()
    return IdleMark(
        main=main,
        status_sha256=kept.status.digests(status)[0],
        desired_sha256=kept.desired.digests(desired)[0] if desired is not None else None,
        next_due_at=next_due_at,
    )


def audit_anchor(meta: ControllerMeta) -> tuple[int, str] | None:
    """The head ``state.json`` recorded, for :func:`controller.audit.chain.verify` (None: none yet)."""
    return (meta.audit_seq, meta.audit_head) if meta.audit_seq > 0 else None


def audit_fields(existing: Mapping[str, bytes], appended: Mapping[str, bytes]) -> dict[str, object]:
    """``state.json``'s anchor fields for the log after ``appended`` (complete new day files)."""
    days = sorted(path for path in {*existing, *appended} if DAY_PATH.fullmatch(path))
    if not days:
        return {"audit_seq": 0, "audit_head": ControllerMeta().audit_head, "audit_file": None}
    last = days[-1]  # only its bytes are read: ``existing`` may read older days from git
    seq, line_hash = head({last: appended[last] if last in appended else existing[last]})
    return {"audit_seq": seq, "audit_head": line_hash, "audit_file": days[-1]}


def _meta(repo: Repository, state: Oid) -> ControllerMeta | None:
    raw = read_blob(repo, state, META_FILE)  # None when the mirror lacks that commit: fetch first
    if raw is None:
        return None
    try:
        return ControllerMeta.model_validate_json(raw)
    except ValidationError:
        return None


def _audit_head_matches(repo: Repository, state: Oid, meta: ControllerMeta) -> bool:
    """The log still ends at the recorded anchor: its last line has that seq and that hash.

    Only the last line is read (a day file may hold tens of thousands): lines cut off or added at
    the end show here; anything edited further up is caught by the full reconcile's verify, which
    runs before anything is ever appended.
    """
    if meta.audit_file is None:
        return meta.audit_seq == 0
    data = read_blob(repo, state, meta.audit_file)
    if data is None or not data.endswith(b"\n"):
        return False
    last = data[:-1].rsplit(b"\n", 1)[-1]
    return last.startswith(b'{"seq":%d,' % meta.audit_seq) and line_hash(last) == meta.audit_head


def remember(mirror: Path, state_commit: Oid | str | None, mark: IdleMark) -> None:
    """Keep ``mark`` for the state commit the server now has (atomically: temp file + rename)."""
    if state_commit is None:
        return
    _keep(mirror, HINT_FILE, _Hint(state_commit=str(state_commit), mark=mark))


def _keep(mirror: Path, name: str, model: BaseModel) -> None:
    """``model`` as ``mirror/name``, atomically (temp file + rename); nothing when the mirror is gone
    or its disk refuses the write (full, read-only)."""
    if not mirror.is_dir():
        return
    try:
        replace_file(mirror, name, model.model_dump_json().encode())
    except OSError as exc:  # a cache: without it the next check lists or reconciles in full
        log.warning("%s: not kept (%s); the next idle check does without it", mirror / name, exc)


def _read_hint(mirror: Path, state_commit: str) -> IdleMark | None:
    try:
        hint = _Hint.model_validate_json((mirror / HINT_FILE).read_bytes())
    except (OSError, ValidationError):
        return None
    return hint.mark if hint.state_commit == state_commit else None
