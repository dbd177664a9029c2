"""The audit log a long-running controller holds (issue 12): one day's bytes, not a year's.

At 100,000 robots a day file is about 45 MB; ``controller run`` keeps its state cache for months.
What must hold, with real reconciles over several days (:mod:`tests.sim.world`) and one
:class:`~controller.reconcile.cache.ReconcileCache`:

* the cached snapshot and every snapshot a load returns hold the blob id of every day file and the
  bytes of the newest only (the one the write step appends to), however many days are read;
* the incremental verify's memo (:class:`~controller.audit.memo.VerifiedDays`) knows old days by
  blob id, holding no bytes;
* an old day rewritten behind that cache is still refused, by the reconcile's incremental verify
  and by ``fleetcd audit verify``, naming the day.
"""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from controller.audit.chain import DAY_PATH
from controller.audit.days import DayFiles
from controller.reconcile.source import fetch_all, open_mirror
from controller.reconcile.statebranch import StateSnapshot, load_state
from controller.reconcile.steps import reconcile_once
from fleetcd.git.objects import read_blob
from fleetcd.git.refs import STATE_BRANCH
from tests.gpgkeys import KeyFactory
from tests.sim.world import STAGING
from tests.test_controller_audit_cache import days_of_history
from tests.test_controller_audit_verify import audit_verify, day_files, rewrite_state

DAYS = 6


def held_days(snapshot: StateSnapshot) -> list[str]:
    """The day files whose bytes ``snapshot`` holds."""
    audit = snapshot.audit
    assert isinstance(audit, DayFiles)
    return [path for path, blob in audit.ids.items() if blob in audit.held]


def test_a_controller_that_reconciled_many_days_holds_the_bytes_of_the_newest_only(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world, cache = days_of_history(tmp_path, keys, days=DAYS)
    cached = cache.state.snapshot
    assert cached is not None and isinstance(cached.audit, DayFiles)
    days = [path for path in cached.audit if DAY_PATH.fullmatch(path)]
    newest = max(days)
    assert len(days) >= 4 and held_days(cached) == [newest]
    server = pygit2.Repository(str(world.server))
    assert cached.audit.held == {cached.audit.blob_id(newest): read_blob(server, STATE_BRANCH, newest)}
    assert not [path for path in cached.files if path.startswith("audit/")]
    # The incremental verify remembers every day by blob id, not by its bytes.
    assert {path: day.digest for path, day in cache.audit.days.items()} == {
        path: f"git:{cached.audit.blob_id(path)}" for path in days
    }

    repo = open_mirror(world.settings.source)
    fetch_all(repo, world.settings.source)
    loaded, cold = load_state(repo, cache=cache.state), load_state(repo)
    assert loaded.audit == cold.audit  # every day read, through both: the same bytes
    assert held_days(loaded) == [newest] and held_days(cold) == [newest]

    world.clock.tick(60)
    world.report_all(STAGING, "deployed")
    world.reconcile()  # verifies, appends to the newest day, writes
    after = cache.state.snapshot
    assert after is not None and held_days(after) == [newest]
    assert len(after.audit) == len(days)


def test_an_old_day_rewritten_behind_a_cache_holding_one_day_is_refused(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    world, cache = days_of_history(tmp_path, keys, days=DAYS)
    log = day_files(world)
    old = sorted(log)[1]
    rewrite_state(world, {old: log[old].replace(b'"kind":"', b'"kind":"x', 1)})
    world.clock.tick(60)
    world.report_all(STAGING, "deployed")

    result = reconcile_once(world.settings)
    assert result.stalled is not None and old in result.stalled
    assert cache.state.snapshot is not None and len(held_days(cache.state.snapshot)) == 1
    code, err = audit_verify(world, capsys)
    assert code == 1 and old in err
