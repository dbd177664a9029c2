"""Signed audit heads, the pure check: what a head must say, where, signed by whom, in which order.

Real gpg signs and verifies; the log is built with :func:`controller.audit.append`. Each test
tampers the way someone with push access to the state branch (but not the controller key) would.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from controller.audit import AuditEvent, AuditKind, append, head
from controller.audit.chain import verify
from controller.audit.heads import (
    HEADS_DIR,
    MAX_SIGNATURE_BYTES,
    check_heads,
    head_document,
    head_files,
    head_path,
    head_seqs,
)
from controller.errors import AuditChainBroken
from fleetcd.compat import UTC
from fleetcd.trust.gpg import Keyring
from tests.gpgkeys import GpgKey, KeyFactory

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
Files = dict[str, bytes]


@pytest.fixture(scope="module")
def controller(keys: KeyFactory) -> GpgKey:
    return keys.key("controller")


@pytest.fixture(scope="module")
def keyring(keys: KeyFactory, controller: GpgKey) -> Iterator[Keyring]:
    with keys.keyring([controller, keys.key("mallory")]) as ring:
        yield ring


def event(i: int) -> AuditEvent:
    return AuditEvent(at=T0 + timedelta(minutes=i), kind=AuditKind.DEVICE_REPORT, device=f"amr-{i}")


def signed_log(keys: KeyFactory, key: GpgKey, batches: int = 3) -> tuple[Files, Files]:
    """A log appended in ``batches`` batches of two events, each batch's head signed by ``key``."""
    log: Files = {}
    heads: Files = {}
    for batch in range(batches):
        added = append(log, [event(batch * 2), event(batch * 2 + 1)])
        log.update(added)
        seq, line = head(added)
        at = T0 + timedelta(minutes=batch * 2 + 1)
        heads.update(head_files(seq, line, max(added), at, lambda data: keys.sign(data, key)))
    return log, heads


def check(keyring: Keyring, controller: GpgKey, log: Files, heads: Files, after: int = 0) -> int:
    report = verify(log, marks=head_seqs(heads))

    def signed(document: bytes, signature: bytes) -> str | None:
        result = keyring.verify_detached(document, signature)
        return None if result.valid and result.fingerprint == controller.fingerprint else result.detail

    return check_heads(
        heads, report.marks, (report.last_seq, report.head_hash), signed, after=after
    ).signed_seq


def test_each_batch_leaves_one_head_and_the_newest_covers_the_end(
    keys: KeyFactory, controller: GpgKey, keyring: Keyring
) -> None:
    log, heads = signed_log(keys, controller)
    assert head_seqs(heads) == [2, 4, 6]
    assert sorted(heads)[0] == f"{HEADS_DIR}2026/05/01/2.json"
    assert check(keyring, controller, log, heads) == 6


def test_an_empty_log_needs_no_head(controller: GpgKey, keyring: Keyring) -> None:
    assert check(keyring, controller, {}, {}) == 0


def test_a_head_signed_by_another_key_is_named(
    keys: KeyFactory, controller: GpgKey, keyring: Keyring
) -> None:
    log, heads = signed_log(keys, controller)
    path = head_path(4, "audit/2026/05/01.jsonl")
    heads[f"{path}.asc"] = keys.sign(heads[path], keys.key("mallory"))
    with pytest.raises(AuditChainBroken) as caught:
        check(keyring, controller, log, heads)
    assert caught.value.file == f"{path}.asc" and "not signed by a controller key" in caught.value.problem


def test_a_head_without_its_signature_is_unsigned(
    keys: KeyFactory, controller: GpgKey, keyring: Keyring
) -> None:
    log, heads = signed_log(keys, controller)
    path = head_path(2, "audit/2026/05/01.jsonl")
    del heads[f"{path}.asc"]
    with pytest.raises(AuditChainBroken) as caught:
        check(keyring, controller, log, heads)
    assert caught.value.file == path and "unsigned" in caught.value.problem


def test_a_signed_head_moved_to_another_seqs_path_is_refused(
    keys: KeyFactory, controller: GpgKey, keyring: Keyring
) -> None:
    log, heads = signed_log(keys, controller)
    six, eight = head_path(6, "audit/2026/05/01.jsonl"), head_path(8, "audit/2026/05/01.jsonl")
    heads[eight], heads[f"{eight}.asc"] = heads[six], heads[f"{six}.asc"]
    with pytest.raises(AuditChainBroken) as caught:
        check(keyring, controller, log, heads)
    assert caught.value.file == eight and "says seq 6" in caught.value.problem


def test_heads_that_go_back_in_time_are_refused(
    keys: KeyFactory, controller: GpgKey, keyring: Keyring
) -> None:
    log, heads = signed_log(keys, controller)
    seq, line = head(log)
    earlier = head_files(
        seq, line, max(log), T0 - timedelta(days=1), lambda data: keys.sign(data, controller)
    )
    heads.update(earlier)
    with pytest.raises(AuditChainBroken) as caught:
        check(keyring, controller, log, heads)
    assert caught.value.file == head_path(6, max(log)) and "heads go back" in caught.value.problem


def test_a_head_filed_under_another_day_is_refused(
    keys: KeyFactory, controller: GpgKey, keyring: Keyring
) -> None:
    log, heads = signed_log(keys, controller, batches=1)
    path = head_path(2, "audit/2026/05/01.jsonl")
    moved = head_path(2, "audit/2026/05/02.jsonl")
    heads = {moved: heads[path], f"{moved}.asc": heads[f"{path}.asc"]}
    with pytest.raises(AuditChainBroken) as caught:
        check(keyring, controller, log, heads)
    assert caught.value.file == moved and "not the one the controller signed" in caught.value.problem


def test_stray_and_oversized_files_under_the_heads_are_named(
    keys: KeyFactory, controller: GpgKey, keyring: Keyring
) -> None:
    log, heads = signed_log(keys, controller, batches=1)
    with pytest.raises(AuditChainBroken) as caught:
        check(keyring, controller, log, {**heads, f"{HEADS_DIR}2026/05/01/notes.txt": b"hi"})
    assert caught.value.file == f"{HEADS_DIR}2026/05/01/notes.txt"
    path = head_path(2, "audit/2026/05/01.jsonl")
    with pytest.raises(AuditChainBroken) as caught:
        check(keyring, controller, log, {**heads, path: heads[path] + b" " * 2000})
    assert caught.value.file == path and "over 1024 bytes" in caught.value.problem


def test_heads_at_or_below_the_verified_one_are_not_checked_again(
    keys: KeyFactory, controller: GpgKey, keyring: Keyring
) -> None:
    log, heads = signed_log(keys, controller)
    old = head_path(2, "audit/2026/05/01.jsonl")
    heads[old] = b"garbage a since-anchor check never reads"
    assert check(keyring, controller, log, heads, after=2) == 6
    with pytest.raises(AuditChainBroken):
        check(keyring, controller, log, heads)


def test_the_signed_document_has_one_byte_form() -> None:
    document = head_document(3, "a" * 64, "audit/2026/05/01.jsonl", T0)
    assert document == (
        b'{"at":"2026-05-01T10:00:00Z","file":"audit/2026/05/01.jsonl","head":"' + b"a" * 64 + b'",'
        b'"kind":"fleetcd-audit-head-v1","seq":3}'
    )


def test_a_second_head_for_one_seq_filed_under_another_day_is_refused(
    keys: KeyFactory, controller: GpgKey, keyring: Keyring
) -> None:
    """Two signed heads for seq 4 (the real one, and a copy planted under another day): which one
    counts would be a guess, so neither does."""
    log, heads = signed_log(keys, controller)
    real = head_path(4, "audit/2026/05/01.jsonl")
    copy = head_path(4, "audit/2026/04/30.jsonl")
    heads[copy], heads[f"{copy}.asc"] = heads[real], heads[f"{real}.asc"]
    with pytest.raises(AuditChainBroken) as caught:
        check(keyring, controller, log, heads)
    assert "a second signed head for seq 4" in caught.value.problem
    named = f"{caught.value.file} {caught.value.problem}"
    assert real in named and copy in named


def test_an_oversized_head_signature_is_refused_before_gpg_reads_it(
    keys: KeyFactory, controller: GpgKey, keyring: Keyring
) -> None:
    log, heads = signed_log(keys, controller, batches=1)
    path = head_path(2, "audit/2026/05/01.jsonl")
    heads[f"{path}.asc"] = heads[f"{path}.asc"] + b"\n" + b"A" * MAX_SIGNATURE_BYTES
    asked: list[bytes] = []

    def signed(document: bytes, signature: bytes) -> str | None:
        asked.append(signature)
        return None

    report = verify(log, marks=head_seqs(heads))
    with pytest.raises(AuditChainBroken) as caught:
        check_heads(heads, report.marks, (report.last_seq, report.head_hash), signed)
    assert caught.value.file == f"{path}.asc" and f"over {MAX_SIGNATURE_BYTES} bytes" in caught.value.problem
    assert asked == [], "gpg never saw the oversized signature"
