"""``controller run``'s cache verifies the audit log incrementally, with real git and a real controller.

A controller that reconciled over several days re-parses, on its next reconcile, only the newest day
file (the one its last write appended to); the older ones are checked by their links alone. An
attacker who rewrites the state branch behind its back (an old line edited, a day deleted, two days
swapped, the last day truncated) is refused with the error a full check names, and a rebuilt cache
verifies everything again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from controller.audit.chain import verify
from controller.errors import AuditChainBroken
from controller.reconcile.cache import ReconcileCache
from controller.reconcile.idle import audit_anchor
from controller.reconcile.steps import reconcile_once
from tests.gpgkeys import KeyFactory
from tests.sim.world import STAGING, ControllerWorld, make_world
from tests.test_controller_audit_verify import day_files, rewrite_state

DAY = timedelta(days=1).total_seconds()
Tamper = Callable[[dict[str, bytes]], dict[str, bytes | None]]


def days_of_history(
    tmp_path: Path, keys: KeyFactory, days: int = 4
) -> tuple[ControllerWorld, ReconcileCache]:
    """A controller with one cache (as ``controller run`` keeps) that reconciled on ``days`` days."""
    world = make_world(tmp_path, keys)
    cache = ReconcileCache()
    world.settings = replace(world.settings, cache=cache)
    world.reconcile()
    for _ in range(days - 1):
        world.clock.tick(DAY)
        world.report_all(STAGING, "deployed")
        world.reconcile()
    return world, cache


def lines(log: Mapping[str, bytes]) -> int:
    return sum(data.count(b"\n") for data in log.values())


def test_the_next_reconcile_parses_only_the_newest_day_file(tmp_path: Path, keys: KeyFactory) -> None:
    world, cache = days_of_history(tmp_path, keys)
    world.clock.tick(60)
    world.report_all(STAGING, "deployed")
    log = day_files(world)
    assert len(log) >= 4
    before = cache.audit.parsed_lines
    world.reconcile()
    newest = max(log)
    assert cache.audit.parsed_lines - before == log[newest].count(b"\n") < lines(log)
    assert set(cache.audit.days) == set(log)


def test_a_rebuilt_cache_verifies_every_line(tmp_path: Path, keys: KeyFactory) -> None:
    world, _ = days_of_history(tmp_path, keys, days=3)
    world.clock.tick(60)
    world.report_all(STAGING, "deployed")
    fresh = ReconcileCache()
    world.settings = replace(world.settings, cache=fresh)
    log = day_files(world)
    world.reconcile()
    assert fresh.audit.parsed_lines == lines(log)


def _edit_old_line(log: dict[str, bytes]) -> dict[str, bytes | None]:
    path = min(log)
    return {path: log[path].replace(b'"kind":"', b'"kind":"x', 1)}


def _delete_old_day(log: dict[str, bytes]) -> dict[str, bytes | None]:
    return {sorted(log)[1]: None}


def _swap_two_days(log: dict[str, bytes]) -> dict[str, bytes | None]:
    a, b = sorted(log)[1:3]
    return {a: log[b], b: log[a]}


def _truncate_last_day(log: dict[str, bytes]) -> dict[str, bytes | None]:
    last = max(log)
    return {last: b"".join(log[last].splitlines(keepends=True)[:-1])}


TAMPERING: dict[str, Tamper] = {
    "edit a line in an old day": _edit_old_line,
    "delete a day": _delete_old_day,
    "swap two days": _swap_two_days,
    "truncate the last day": _truncate_last_day,
}


def stalls_as_a_full_check(
    world: ControllerWorld, cache: ReconcileCache, tamper: Tamper
) -> tuple[str, Mapping[str, bytes], int]:
    """The log rewritten on the state branch by ``tamper``, a minute on the robots report, and the
    next reconcile with ``cache`` stalls with the error a full check of the log names. Returns that
    stall, the rewritten log and how many lines the cache parsed."""
    rewrite_state(world, tamper(day_files(world)))
    world.clock.tick(60)
    world.report_all(STAGING, "deployed")
    state = world.state()
    with pytest.raises(AuditChainBroken) as full:  # what --once and `audit verify` see
        verify(state.audit, anchor=audit_anchor(state.meta))
    before = cache.audit.parsed_lines
    result = reconcile_once(world.settings)
    assert result.stalled is not None and str(full.value) in result.stalled
    return result.stalled, state.audit, cache.audit.parsed_lines - before


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=list(TAMPERING))
def test_a_log_rewritten_behind_a_warm_cache_stalls_with_the_full_checks_error(
    tmp_path: Path, keys: KeyFactory, tamper: Tamper
) -> None:
    world, cache = days_of_history(tmp_path, keys)
    assert len(cache.audit.days) == 3  # the fourth day was written after the last check
    _, log, parsed = stalls_as_a_full_check(world, cache, tamper)
    assert parsed < lines(log)  # the warm cache did skip days
