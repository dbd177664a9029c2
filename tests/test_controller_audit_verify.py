"""``fleetcd audit verify``, full and ``--since-anchor``, through the real CLI on a real server.

A fleet reconciled over three days leaves three day files. ``--since-anchor`` after a first check
reads only the day files from the head it verified on and agrees with the full check; it catches an
older day file changed behind its back (by blob id, without reading it), and a log rewritten
consistently — chain, keys and ``state.json`` all recomputed — that a full check alone accepts.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.audit.chain import append
from controller.audit.events import AuditEvent
from controller.cli import build
from controller.reconcile.idle import audit_fields
from controller.state.layout import META_FILE
from controller.state.model import ControllerMeta
from fleetcd.cli.main import run
from fleetcd.git.objects import Identity, commit, read_blob, ref_target, write_tree
from fleetcd.git.refs import STATE_BRANCH
from fleetcd.git.repo import tree_of
from tests.gpgkeys import KeyFactory, shared_keys
from tests.sim.world import STAGING, ControllerWorld, make_world

DAY = timedelta(days=1).total_seconds()
MALLORY = Identity("mallory", "mallory@example.invalid")


@pytest.fixture(scope="module")
def keys(gpg_available: str) -> KeyFactory:
    return shared_keys()


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


def test_a_consistently_rewritten_log_passes_a_full_check_but_not_since_anchor(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world = three_days(tmp_path, keys)
    assert audit_verify(world, capsys)[0] == 0
    files = day_files(world)
    events = [
        AuditEvent.model_validate(json.loads(line)["event"])
        for path in sorted(files)
        for line in files[path].splitlines()
    ]
    events[0] = events[0].model_copy(update={"reason": "nothing to see here"})
    forged = append({}, events)
    assert sorted(forged) == sorted(files)
    meta = ControllerMeta.model_validate_json(
        read_blob(pygit2.Repository(str(world.server)), STATE_BRANCH, META_FILE) or b""
    )
    meta = meta.model_copy(update=audit_fields({}, forged))
    rewrite_state(world, {**forged, META_FILE: meta.model_dump_json().encode()})

    assert audit_verify(world, capsys, "--since-anchor")[0] == 1
    world.settings.source.mirror.joinpath("fleetcd-audit-verified.json").unlink()
    assert audit_verify(world, capsys)[0] == 0  # nothing outside the log remembers the old head
