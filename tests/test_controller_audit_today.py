"""``controller run`` verifies today's audit file by its appended lines, with real git, gpg and reconciles.

The cache (``ReconcileCache.audit``) remembers how much of today's file it verified and the sha256
of those bytes; the next reconcile parses only what its last write appended, and the write step
appends from the remembered head and keys without parsing the file. Someone who rewrites today's
file on the state branch behind the controller's back (a line in the middle, the file cut back, a
line added that breaks the chain) is refused with the full check's error, and a reconcile that died
between its writes — an exception with the cache kept, or a real ``SIGKILL`` — heals on the next.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pygit2
import pytest

from controller.audit.chain import verify
from controller.reconcile.cache import ReconcileCache
from controller.reconcile.idle import audit_anchor
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.source import Source
from controller.reconcile.steps import reconcile_once
from fleetcd.git.objects import ref_target
from fleetcd.git.refs import status_ref
from tests.gpgkeys import KeyFactory
from tests.sim.world import STAGING, ControllerWorld, assert_no_duplicates, audit_lines
from tests.test_controller_audit_cache import days_of_history, stalls_as_a_full_check
from tests.test_controller_audit_verify import day_files

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["desired-written", "state-committed", "state-pushed"]
Tamper = Callable[[dict[str, bytes]], dict[str, bytes | None]]


def push_forged_claims(world: ControllerWorld) -> None:
    """Every staging robot reports a claim for a version it was not sent: refused, and logged with
    the report's seq, so the reconcile that reads them appends lines to today's file."""
    for device in STAGING:
        claim = world.sim.robots[device].reports["nav"].model_copy(update={"version": "0.0.0-forged"})
        world.sim.push_report(device, world.clock.now, deployments=[claim])


def reports_and_reconcile(world: ControllerWorld) -> None:
    """A minute on, forged claims (:func:`push_forged_claims`) and a reconcile."""
    world.clock.tick(60)
    push_forged_claims(world)
    world.reconcile()


def warm_today(tmp_path: Path, keys: KeyFactory) -> tuple[ControllerWorld, ReconcileCache]:
    """Three days reconciled, then one more reconcile today: the cache verified today's file."""
    world, cache = days_of_history(tmp_path, keys, days=3)
    reports_and_reconcile(world)
    today = max(day_files(world))
    assert today in cache.audit.days
    return world, cache


def test_the_next_reconcile_of_the_day_parses_only_what_the_last_one_appended(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world, cache = warm_today(tmp_path, keys)
    reports_and_reconcile(world)
    next_reconcile_parses_only_what_the_last_appended(world, cache)
    next_reconcile_parses_only_what_the_last_appended(world, cache)


def next_reconcile_parses_only_what_the_last_appended(world: ControllerWorld, cache: ReconcileCache) -> None:
    """Today's lines the last reconcile appended are all the next one parses; the log is whole."""
    today = max(day_files(world))
    appended = day_files(world)[today].count(b"\n") - cache.audit.days[today].lines
    before = cache.audit.parsed_lines
    reports_and_reconcile(world)
    assert cache.audit.parsed_lines - before == appended > 0
    state = world.state()
    assert_no_duplicates(state)
    assert verify(state.audit, anchor=audit_anchor(state.meta)).last_seq == state.meta.audit_seq


def _edit_a_middle_line_and_append(log: dict[str, bytes]) -> dict[str, bytes | None]:
    today = max(log)
    lines = log[today].splitlines(keepends=True)
    middle = len(lines) // 2
    lines[middle] = lines[middle].replace(b'"kind":"', b'"kind":"x', 1)
    return {today: b"".join(lines) + lines[-1]}


def _cut_today_back(log: dict[str, bytes]) -> dict[str, bytes | None]:
    today = max(log)
    return {today: b"".join(log[today].splitlines(keepends=True)[:-1])}


def _append_a_line_that_breaks_the_chain(log: dict[str, bytes]) -> dict[str, bytes | None]:
    today = max(log)
    return {today: log[today] + log[today].splitlines(keepends=True)[-1]}


def _replace_today_with_the_same_length(log: dict[str, bytes]) -> dict[str, bytes | None]:
    today = max(log)
    data = bytearray(log[today])
    data[data.index(b'"kind":"') + 8] ^= 0x01  # one letter of the first line's kind
    return {today: bytes(data)}


TAMPERING: dict[str, Tamper] = {
    "edit a line in the middle of today, then append": _edit_a_middle_line_and_append,
    "cut today back": _cut_today_back,
    "append a line that breaks the chain": _append_a_line_that_breaks_the_chain,
    "replace today with a file of the same length": _replace_today_with_the_same_length,
}


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=list(TAMPERING))
def test_today_rewritten_behind_a_warm_cache_stalls_with_the_full_checks_error(
    tmp_path: Path, keys: KeyFactory, tamper: Tamper
) -> None:
    world, cache = warm_today(tmp_path, keys)
    stalled, log, parsed = stalls_as_a_full_check(world, cache, tamper)
    assert parsed <= log[max(log)].count(b"\n")  # today at most
    fresh = reconcile_once(replace(world.settings, cache=ReconcileCache()))  # and without the cache
    assert fresh.stalled == stalled


def _fail_at(step: str) -> Callable[[str], None]:
    def checkpoint(name: str) -> None:
        if name == step:
            raise OSError(f"the write died at {name}")

    return checkpoint


@pytest.mark.parametrize("step", STEPS)
def test_a_reconcile_that_died_between_writes_heals_on_the_next_with_the_same_cache(
    tmp_path: Path, keys: KeyFactory, step: str
) -> None:
    world, cache = warm_today(tmp_path, keys)
    healthy = world.settings
    world.clock.tick(60)
    world.report_all(STAGING, "deployed")
    with pytest.raises(OSError, match="the write died"):
        reconcile_once(replace(healthy, checkpoint=_fail_at(step)))  # the loop keeps its cache
    world.settings = healthy
    reports_and_reconcile(world)  # verifies what the dead reconcile left, appends its own lines
    next_reconcile_parses_only_what_the_last_appended(world, cache)


def crash_main(argv: list[str]) -> None:
    """Subprocess entry: ``controller run``'s cache over two reconciles; between them the robots'
    status refs move to ``later`` (reports already written); SIGKILLed at ``step`` of the second."""
    server, mirror, gnupghome, first, second, step, later = argv
    settings = ControllerSettings(
        source=Source(server, Path(mirror)), gnupghome=Path(gnupghome), cache=ReconcileCache()
    )
    reconcile_once(replace(settings, now=lambda: datetime.fromisoformat(first)))
    repo = pygit2.Repository(server)
    for ref, target in json.loads(later).items():
        repo.references.create(ref, pygit2.Oid(hex=target), force=True)

    def checkpoint(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    reconcile_once(replace(settings, now=lambda: datetime.fromisoformat(second), checkpoint=checkpoint))
    sys.exit(3)  # the step was never reached


def forged_reports_held_back(world: ControllerWorld) -> dict[str, str]:
    """Staging's next forged reports, written to the server with their refs set back: ref → commit."""
    repo = pygit2.Repository(str(world.server))
    before = {ref: ref_target(repo, ref) for ref in map(status_ref, STAGING)}
    push_forged_claims(world)
    later = {ref: str(ref_target(repo, ref)) for ref in before}
    for ref, target in before.items():
        assert target is not None
        repo.references.create(ref, target, force=True)
    return later


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_between_writes_of_a_warm_controller_heals_on_restart(
    tmp_path: Path, keys: KeyFactory, step: str
) -> None:
    world, _ = days_of_history(tmp_path, keys, days=3)
    world.clock.tick(60)
    push_forged_claims(world)  # what the warm reconcile appends
    first = world.clock.now
    world.clock.tick(60)
    later = forged_reports_held_back(world)  # what the killed reconcile appends
    settings = world.settings
    script = "import sys; from tests.test_controller_audit_today import crash_main; crash_main(sys.argv[1:])"
    args = [settings.source.url, str(settings.source.mirror), str(settings.gnupghome)]
    args += [first.isoformat(), world.clock.now.isoformat(), step, json.dumps(later)]
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr[-3000:])
    restarted = ReconcileCache()  # a new process: nothing remembered
    world.settings = replace(settings, cache=restarted)
    world.reconcile()
    lines = audit_lines(world.state())
    assert sum(line["event"].get("reason") == "mismatched_deployment" for line in lines) == 2 * len(STAGING)
    reports_and_reconcile(world)  # verified in full by the new process, at the latest here
    next_reconcile_parses_only_what_the_last_appended(world, restarted)
