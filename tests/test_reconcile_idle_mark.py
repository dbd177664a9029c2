"""The idle fast path's mark (controller.reconcile.idle, pure parts and the hint file in the mirror).

The fast path skips a whole reconcile when the server's refs digest to what the last one marked. So
the digest must change when anything a reconcile reads changes (a ref added, removed, moved or
renamed), and must not change for anything else (listing order); the anchor that ties ``state.json``
to the audit log must name the log's real head; and the hint kept in the mirror (a cache anyone
with disk access can damage) must count only for the state commit it was written for.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from controller.audit.chain import GENESIS, append, day_path, head
from controller.audit.events import AuditEvent, AuditKind
from controller.reconcile.idle import (
    HINT_FILE,
    _read_hint,
    audit_anchor,
    audit_fields,
    mark_of,
    remember,
)
from controller.reconcile.refdigest import refs_digest
from controller.state.model import ControllerMeta
from fleetcd.compat import UTC
from fleetcd.git.repo import Oid

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
A, B, C = "a" * 40, "b" * 40, "c" * 40
STATUS = {"refs/fleetcd/status/r1/report": A, "refs/fleetcd/status/r2/report": B}
LISTED = {ref: Oid(hex=oid) for ref, oid in STATUS.items()}  # as a ref listing gives them

# --- refs_digest --------------------------------------------------------------------------------------


def test_the_digest_does_not_depend_on_listing_order() -> None:
    reordered = dict(reversed(list(STATUS.items())))
    assert refs_digest(reordered) == refs_digest(STATUS)


@pytest.mark.parametrize(
    "changed",
    [
        {**STATUS, "refs/fleetcd/status/r3/report": C},
        {"refs/fleetcd/status/r1/report": A},
        {**STATUS, "refs/fleetcd/status/r2/report": C},
        {"refs/fleetcd/status/r1/report": A, "refs/fleetcd/status/r9/report": B},
        {"refs/fleetcd/status/r1/report": B, "refs/fleetcd/status/r2/report": A},
        {},
    ],
    ids=["added", "removed", "moved", "renamed", "swapped", "emptied"],
)
def test_any_change_a_reconcile_would_read_changes_the_digest(changed: dict[str, str]) -> None:
    assert refs_digest(changed) != refs_digest(STATUS)


def test_real_ref_names_and_ids_cannot_be_shifted_to_collide() -> None:
    # Ref names hold no space and object ids are hex, so each "ref oid" line parses one way only.
    one = {"refs/fleetcd/status/r1/report": A}
    other = {"refs/fleetcd/status/r1/report" + A[:1]: A[1:] + "0"}
    assert refs_digest(one) != refs_digest(other)


def test_the_digest_is_sha256_hex_and_stable() -> None:
    digest = refs_digest(STATUS)
    assert len(digest) == 64 and int(digest, 16) >= 0
    # Bucketed (controller.reconcile.refdigest): no longer the sha256 of the empty line list, so a
    # mark made by the scheme before never matches one made now.
    assert refs_digest({}) != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert refs_digest({}) == refs_digest({})


def test_a_mark_holds_main_both_digests_and_the_next_due_instant() -> None:
    desired = {"refs/fleetcd/desired/r1": Oid(hex=C)}
    mark = mark_of(A, LISTED, desired, NOW + timedelta(minutes=5))
    assert (mark.main, mark.status_sha256, mark.desired_sha256) == (
        A,
        refs_digest(STATUS),
        refs_digest(desired),
    )
    assert mark.next_due_at == NOW + timedelta(minutes=5)
    assert mark_of(A, LISTED, None, NOW).desired_sha256 is None


# --- the audit anchor ---------------------------------------------------------------------------------


def events(count: int, day: int = 0) -> list[AuditEvent]:
    return [
        AuditEvent(
            at=NOW + timedelta(days=day, minutes=i), kind=AuditKind.DEVICE_REPORT, device=f"r{day}-{i}"
        )
        for i in range(count)
    ]


def test_no_log_anchors_nothing() -> None:
    assert audit_fields({}, {}) == {
        "audit_seq": 0,
        "audit_head": ControllerMeta().audit_head,
        "audit_file": None,
    }
    assert audit_anchor(ControllerMeta()) is None


def test_the_anchor_is_the_head_of_the_newest_day_file_after_the_append() -> None:
    first = append({}, events(3))
    second = append(first, events(2, day=1))
    fields = audit_fields(first, second)
    newest = day_path(NOW + timedelta(days=1))
    assert fields["audit_file"] == newest
    assert (fields["audit_seq"], fields["audit_head"]) == head({newest: second[newest]})
    assert fields["audit_seq"] == 5


def test_the_anchor_of_an_append_to_the_same_day_moves_forward() -> None:
    first = append({}, events(2))
    more = append(
        first, [*events(3)[2:], AuditEvent(at=NOW + timedelta(hours=1), kind=AuditKind.STALLED, reason="x")]
    )
    assert audit_fields(first, more)["audit_seq"] == 4
    assert audit_fields(first, {})["audit_seq"] == 2


def test_audit_anchor_reads_what_state_json_recorded() -> None:
    meta = ControllerMeta(audit_seq=7, audit_head="f" * 64, audit_file="audit/2026/05/04.jsonl")
    assert audit_anchor(meta) == (7, "f" * 64)
    assert ControllerMeta().audit_head in (GENESIS, "0" * 64)


# --- the hint file in the mirror ----------------------------------------------------------------------


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    path = tmp_path / "mirror.git"
    path.mkdir()
    return path


def test_a_remembered_mark_counts_only_for_its_state_commit(mirror: Path) -> None:
    mark = mark_of(A, LISTED, None, NOW)
    remember(mirror, B, mark)
    assert _read_hint(mirror, B) == mark
    assert _read_hint(mirror, C) is None


def test_remembering_again_replaces_the_hint_atomically(mirror: Path) -> None:
    remember(mirror, B, mark_of(A, LISTED, None, NOW))
    newer = mark_of(C, {}, None, NOW + timedelta(minutes=1))
    remember(mirror, C, newer)
    assert _read_hint(mirror, C) == newer and _read_hint(mirror, B) is None
    assert [p.name for p in mirror.iterdir()] == [HINT_FILE]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\xff",
        b"{}",
        b'{"state_commit": "x"}',
        b'{"state_commit": "b", "mark": {}, "extra": 1}',
        b"[]",
    ],
    ids=["empty", "binary", "empty-object", "no-mark", "unknown-field", "list"],
)
def test_a_damaged_hint_means_no_hint_never_an_error(mirror: Path, content: bytes) -> None:
    (mirror / HINT_FILE).write_bytes(content)
    assert _read_hint(mirror, "b") is None


def test_no_hint_file_means_no_hint(mirror: Path) -> None:
    assert _read_hint(mirror, B) is None


def test_nothing_is_remembered_without_a_state_commit_or_a_mirror(mirror: Path, tmp_path: Path) -> None:
    remember(mirror, None, mark_of(A, LISTED, None, NOW))
    assert not (mirror / HINT_FILE).exists()
    remember(tmp_path / "absent", B, mark_of(A, LISTED, None, NOW))
    assert not (tmp_path / "absent").exists()


def test_a_hint_file_that_is_a_directory_is_no_hint(mirror: Path) -> None:
    (mirror / HINT_FILE).mkdir()
    assert _read_hint(mirror, B) is None
