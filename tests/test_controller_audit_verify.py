"""``fleetcd audit verify``, full and ``--since-anchor``, through the real CLI on a real server.

A fleet reconciled over three days leaves three day files. ``--since-anchor`` after a first check
reads only the day files from the head it verified on and agrees with the full check; it catches an
older day file changed behind its back (by blob id, without reading it). The signed heads catch a
log rewritten consistently — chain, keys and ``state.json`` all recomputed — by someone without the
controller key, lines appended without it, and a log cut back to an older head.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.audit.chain import append, head
from controller.audit.events import AuditEvent
from controller.audit.heads import HEADS_DIR, head_document, head_path
from controller.cli import build
from controller.reconcile.idle import audit_fields
from controller.reconcile.steps import reconcile_once
from controller.state.layout import META_FILE
from controller.state.model import ControllerMeta
from fleetcd.cli.main import run
from fleetcd.git.objects import Identity, commit, read_blob, ref_target, write_tree
from fleetcd.git.refs import STATE_BRANCH
from fleetcd.git.repo import tree_of
from tests.gpgkeys import KeyFactory
from tests.sim.world import STAGING, ControllerWorld, make_world

DAY = timedelta(days=1).total_seconds()
MALLORY = Identity("mallory", "mallory@example.invalid")


def three_days(tmp_path: Path, keys: KeyFactory) -> ControllerWorld:
    world = make_world(tmp_path, keys)
    world.reconcile()
    world.clock.tick(DAY)
    world.report_all(STAGING, "deployed")
    world.reconcile()
    world.clock.tick(DAY)
    world.reconcile()  # the soak is over: staging passes, canary starts
    return world


def audit_verify(world: ControllerWorld, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, Any]:
    cache = world.settings.source.mirror.parent
    code = run(
        build(), ["audit", "verify", "--repo", str(world.server), "--cache", str(cache), "--json", *flags]
    )
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else err


def rewrite_state(world: ControllerWorld, files: dict[str, bytes | None]) -> None:
    server = pygit2.Repository(str(world.server))
    head = ref_target(server, STATE_BRANCH)
    assert head is not None
    tree = write_tree(server, files, tree_of(server, head))
    commit(server, STATE_BRANCH, tree, "history, improved", [head], MALLORY, world.clock.now)


def day_files(world: ControllerWorld) -> dict[str, bytes]:
    return {p: d for p, d in world.state().audit.items() if p.endswith(".jsonl")}


def test_since_anchor_reads_only_the_newer_day_files_and_agrees_with_the_full_check(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = three_days(tmp_path, keys)
    assert len(day_files(world)) == 3
    code, first = audit_verify(world, capsys, "--since-anchor")  # nothing remembered: a full check
    assert code == 0 and first["since_seq"] is None

    world.clock.tick(DAY)
    world.report_all(["can-1", "can-2", "can-3"], "deployed")
    world.reconcile()
    code, since = audit_verify(world, capsys, "--since-anchor")
    code_full, full = audit_verify(world, capsys)
    assert (code, code_full) == (0, 0)
    assert since["since_seq"] == first["seq"]
    assert (since["head"], since["seq"]) == (full["head"], full["seq"])
    newer = sorted(day_files(world))[2:]  # the day file of the last head, and the new one
    assert since["lines"] == sum(day_files(world)[p].count(b"\n") for p in newer) < full["lines"]


def test_an_older_day_file_changed_after_verification_is_caught_without_reading_it(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = three_days(tmp_path, keys)
    assert audit_verify(world, capsys)[0] == 0
    oldest = sorted(day_files(world))[0]
    rewrite_state(world, {oldest: day_files(world)[oldest] + b"\n"})

    code, out = audit_verify(world, capsys, "--since-anchor")
    assert code == 1 and oldest in out and "changed since the log was verified" in out


def heads_of(world: ControllerWorld) -> dict[str, bytes]:
    return {p: d for p, d in world.state().files.items() if p.startswith(HEADS_DIR)}


def rewritten(world: ControllerWorld) -> dict[str, bytes | None]:
    """The log with its first event edited and every hash recomputed, ``state.json``'s anchor too."""
    files = day_files(world)
    events = [
        AuditEvent.model_validate(json.loads(line)["event"])
        for path in sorted(files)
        for line in files[path].splitlines()
    ]
    events[0] = events[0].model_copy(update={"reason": "nothing to see here"})
    forged = append({}, events)
    assert sorted(forged) == sorted(files)
    return {**forged, META_FILE: anchored(world, forged)}


def anchored(world: ControllerWorld, log: dict[str, bytes]) -> bytes:
    meta = ControllerMeta.model_validate_json(
        read_blob(pygit2.Repository(str(world.server)), STATE_BRANCH, META_FILE) or b""
    )
    return meta.model_copy(update=audit_fields({}, log)).model_dump_json().encode()


def test_every_appending_reconcile_signs_its_head_once_and_an_idle_one_signs_nothing(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = three_days(tmp_path, keys)
    heads = heads_of(world)
    documents = sorted(p for p in heads if p.endswith(".json"))
    assert len(documents) == 3 and all(f"{p}.asc" in heads for p in documents)
    newest = json.loads(heads[max(documents, key=lambda p: int(p.rsplit("/", 1)[1][:-5]))])
    assert (newest["seq"], newest["head"]) == head(day_files(world))
    assert newest["at"] == world.clock.now.isoformat().replace("+00:00", "Z")

    world.reconcile()  # nothing new to log
    assert heads_of(world) == heads
    code, out = audit_verify(world, capsys)
    assert code == 0 and out["signed_seq"] == newest["seq"] and out["heads_checked"] == 3


def test_a_consistently_rewritten_log_fails_at_the_first_head_the_controller_signed(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = three_days(tmp_path, keys)
    first_head = min(heads_of(world), key=lambda p: int(p.rsplit("/", 1)[1].split(".")[0]))
    rewrite_state(world, rewritten(world))

    code, err = audit_verify(world, capsys)  # a full check, nothing remembered: the heads alone
    assert code == 1
    assert first_head in err and "not the one the controller signed" in err


def test_a_rewritten_log_with_its_heads_removed_names_the_first_unsigned_line(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = three_days(tmp_path, keys)
    dropped: dict[str, bytes | None] = dict.fromkeys(heads_of(world))
    rewrite_state(world, {**rewritten(world), **dropped})

    code, err = audit_verify(world, capsys)
    assert code == 1 and "lines 1.." in err and "covered by no signed head" in err


def test_a_rewritten_log_re_signed_by_a_non_controller_key_is_refused(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = three_days(tmp_path, keys)
    forged = rewritten(world)
    log = {p: d for p, d in forged.items() if p.endswith(".jsonl") and d is not None}
    seq, line = head(log)
    mallory = keys.key("mallory")
    document = head_document(seq, line, max(log), world.clock.now)
    path = head_path(seq, max(log))
    dropped: dict[str, bytes | None] = dict.fromkeys(heads_of(world))
    rewrite_state(world, {**forged, **dropped, path: document, f"{path}.asc": keys.sign(document, mallory)})

    code, err = audit_verify(world, capsys)
    assert code == 1 and f"{path}.asc" in err and "not signed by a controller key" in err


def test_lines_appended_without_the_controller_key_are_unsigned(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = three_days(tmp_path, keys)
    log = day_files(world)
    extra = AuditEvent.model_validate(json.loads(log[max(log)].splitlines()[-1])["event"])
    grown = append(log, [extra.model_copy(update={"reason": "approved by the CTO, honest"})])
    rewrite_state(world, {**grown, META_FILE: anchored(world, {**log, **grown})})

    code, err = audit_verify(world, capsys)
    seq = head({**log, **grown})[0]
    assert code == 1 and f"lines {seq}..{seq} are covered by no signed head" in err


def test_a_log_cut_back_to_an_older_signed_head_is_caught(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = three_days(tmp_path, keys)
    assert audit_verify(world, capsys, "--since-anchor")[0] == 0
    heads = heads_of(world)
    by_seq = {int(p.rsplit("/", 1)[1].split(".")[0]): p for p in heads if p.endswith(".json")}
    older, next_head, newest = sorted(by_seq)
    log = day_files(world)
    cut: dict[str, bytes | None] = {}
    kept = 0
    for path in sorted(log):
        lines = log[path].splitlines(keepends=True)[: max(0, older - kept)]
        kept += len(lines)
        cut[path] = b"".join(lines) or None
    remaining = {p: d for p, d in cut.items() if d is not None}
    assert head(remaining)[0] == older
    rewrite_state(world, {**cut, META_FILE: anchored(world, remaining)})  # state.json agrees

    code, err = audit_verify(world, capsys)  # the newer heads are still there
    assert code == 1 and by_seq[next_head] in err and "lines were cut from the end" in err

    newer: dict[str, bytes | None] = {p: None for p in heads if not p.startswith(by_seq[older])}
    rewrite_state(world, newer)  # the heads above it go too: the branch alone is consistent again
    code, err = audit_verify(world, capsys, "--since-anchor")
    assert code == 1 and f"changed since the log was verified up to seq {newest}" in err


def test_since_anchor_hashes_only_the_new_lines_and_reads_only_the_new_heads(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = three_days(tmp_path, keys)
    code, first = audit_verify(world, capsys, "--since-anchor")
    assert code == 0 and first["heads_checked"] == 3
    for _ in range(3):
        world.clock.tick(60)
        world.report_all(["can-1"], "deployed" if _ % 2 else "downloading")
        world.reconcile()
    log = day_files(world)
    since_last_file = sum(log[p].count(b"\n") for p in sorted(log)[2:])
    new_heads = len([p for p in heads_of(world) if p.endswith(".json")]) - 3

    code, since = audit_verify(world, capsys, "--since-anchor")
    assert code == 0 and since["since_seq"] == first["seq"]
    assert since["heads_checked"] == new_heads >= 1
    assert since["lines"] == since_last_file  # the head's day file and newer: not the whole log
    assert since["lines"] < since["seq"]

    code, again = audit_verify(world, capsys, "--since-anchor")  # nothing new: nothing hashed but
    assert code == 0 and again["heads_checked"] == 0  # the head's own day file


def test_heads_signed_before_a_controller_key_rotation_still_verify(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    old = keys.key("controller")
    k2 = keys.key("controller-2")
    world.fleet.add_key_file(k2)
    world.fleet.rotate(controller=world.fleet.key_refs(k2))  # the old key leaves the trust root
    world.merge("Rotate the controller key out")
    world.clock.tick(60)
    world.report_all(STAGING, "deployed")
    world.reconcile()

    heads = heads_of(world)
    by_seq = sorted((int(p.rsplit("/", 1)[1][:-5]), p) for p in heads if p.endswith(".json"))
    signers = []
    with keys.keyring([old, k2]) as keyring:
        for _, path in by_seq:
            signers.append(keyring.verify_detached(heads[path], heads[f"{path}.asc"]).fingerprint)
    assert signers[0] == old.fingerprint and signers[-1] == k2.fingerprint
    code, out = audit_verify(world, capsys)
    assert code == 0 and out["heads_checked"] == len(by_seq) and out["signed_seq"] == out["seq"]


def test_a_stall_before_the_trust_root_loaded_still_signs_its_audit_line(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    world.fleet.write()
    (world.fleet.root / "fleet.yaml").write_bytes(b"apiVersion: [unclosed\n")
    world.fleet.git("add", "-A")
    world.fleet.git("commit", "-q", "-m", "Break fleet.yaml")
    world.fleet.git("push", "-q", str(world.server), "main")
    world.clock.tick(60)
    assert reconcile_once(world.settings).stalled is not None

    log = day_files(world)
    assert b'"kind":"stalled"' in log[max(log)]
    code, out = audit_verify(world, capsys)
    assert code == 0 and out["signed_seq"] == out["seq"] == head(log)[0]


def test_a_head_re_signed_by_an_approver_a_key_the_fleet_trusts_for_something_else_is_refused(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Alice's key is in keys/ and verifies: her signature is valid, but she approves rollouts;
    only a controller key of a trust-root version may vouch for the log."""
    world = three_days(tmp_path, keys)
    forged = rewritten(world)
    log = {p: d for p, d in forged.items() if p.endswith(".jsonl") and d is not None}
    seq, line = head(log)
    alice = next(k for k in world.fleet.approver_keys if k.name == "alice")
    document = head_document(seq, line, max(log), world.clock.now)
    path = head_path(seq, max(log))
    dropped: dict[str, bytes | None] = dict.fromkeys(heads_of(world))
    rewrite_state(world, {**forged, **dropped, path: document, f"{path}.asc": keys.sign(document, alice)})

    code, err = audit_verify(world, capsys)
    assert code == 1 and f"{path}.asc" in err
    assert f"signed by {alice.fingerprint}, not a controller key" in err


def test_without_a_verified_trust_root_on_main_no_head_is_taken_on_trust(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone removes trust/root/1.yaml's signatures on main: the controller keys can no longer be
    known, so audit verify refuses to call the log intact (exit 4, naming main) instead of checking
    the heads against whatever keys/ holds."""
    world = three_days(tmp_path, keys)
    fleet = world.fleet
    fleet.git("rm", "-rq", "trust/root/1.yaml.d")
    fleet.git("commit", "-qm", "drop the trust root's signatures")
    fleet.git("push", "-q", str(world.server), "main")

    code, err = audit_verify(world, capsys)
    assert code == 4
    assert "no verified trust root" in err and fleet.git("rev-parse", "--short=12", "HEAD") in err


def test_an_intact_log_is_said_in_one_line_naming_its_head(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = three_days(tmp_path, keys)
    cache = world.settings.source.mirror.parent
    code = run(build(), ["audit", "verify", "--repo", str(world.server), "--cache", str(cache)])
    out, _ = capsys.readouterr()
    seq, line = head(day_files(world))
    assert code == 0
    assert out.startswith(f"audit log intact: {seq} lines, head {line[:16]} (seq {seq})")
    assert "head signed by a controller key (3 signed heads checked)" in out
