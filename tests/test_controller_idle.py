"""The idle fast path: a reconcile with nothing new stops after listing refs, yet the clock still
dispatches scheduled work and anything new — a commit, a report, a damaged log — ends it.

Worlds are the controller scenario's (real git server, real gpg, simulated robots writing real
status refs, injected clock). The pure horizon (:mod:`controller.reconcile.due`) is checked against
a brute-force scan of the maintenance-window rule across daylight-saving nights.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.audit.chain import verify
from controller.delivery import delivery_ref
from controller.engine.windows import window_open
from controller.errors import AuditChainBroken
from controller.reconcile.due import FULL_RECONCILE_EVERY, soak_seconds, window_changes
from controller.reconcile.idle import HINT_FILE, LISTING_FILE, audit_anchor
from controller.reconcile.steps import reconcile_once
from controller.state.model import WavePhase
from fleetcd.compat import UTC
from fleetcd.git.objects import Identity, commit, read_blob, ref_target, write_tree
from fleetcd.git.packedrefs import RefStorage, read_ref_storage
from fleetcd.git.refs import STATE_BRANCH
from fleetcd.git.repo import tree_of
from fleetcd.models.base import MaintenanceWindow
from fleetcd.models.rollout import AllAtOnce, BlueGreen, Canary, Rolling, Strategy, Waves
from fleetcd.planning.waves import plan_waves
from tests.fleetrepo import FleetRepoBuilder
from tests.gitrepos import git
from tests.gpgkeys import KeyFactory
from tests.sim.world import STAGING, ControllerWorld, assert_no_duplicates, audit_lines, make_world

SOAK = timedelta(seconds=60)  # the scenario's waves soak 60 s
TIMEOUT = timedelta(seconds=300)  # device_timeout_seconds, well inside FULL_RECONCILE_EVERY


def soaking_staging(
    tmp_path: Path, keys: KeyFactory, configure: Callable[[FleetRepoBuilder], None] | None = None
) -> ControllerWorld:
    """Staging deployed and reported: the wave soaks until 60 s after its gates were met."""
    world = make_world(tmp_path, keys, configure=configure)
    world.reconcile()
    world.report_all(STAGING, "deployed")
    world.clock.tick(10)
    world.reconcile()
    assert world.wave("staging") is WavePhase.SOAKING
    return world


def versions(world: ControllerWorld, device: str) -> list[str]:
    return [d.version for d in world.sim.bundle(device, world.clock.now).deployments]


def test_an_idle_reconcile_writes_nothing_then_the_soak_ending_passes_the_wave(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = soaking_staging(tmp_path, keys)
    (wave,) = [w for w in world.state().rollouts["nav"].waves if w.name == "staging"]
    assert wave.gates_met_at is not None
    mark = world.state().meta.idle
    assert mark is not None and mark.next_due_at == wave.gates_met_at + SOAK

    world.clock.tick(30)
    quiet = world.reconcile()
    assert (quiet.idle, quiet.state_commit, quiet.events, quiet.signatures) == (True, None, [], 0)
    assert versions(world, "can-1") == []

    world.clock.tick(31)  # past the soak: no commit, no report, only the clock
    woken = world.reconcile()
    assert not woken.idle and woken.state_commit is not None
    assert world.wave("staging") is WavePhase.PASSED
    assert versions(world, "can-1") == ["1.0.0"]


def short_timeout(fleet: FleetRepoBuilder) -> None:
    fleet.fleet["defaults"] = {"device_timeout_seconds": int(TIMEOUT.total_seconds())}


def test_a_deadline_passing_while_idle_times_the_silent_robot_out(tmp_path: Path, keys: KeyFactory) -> None:
    world = make_world(tmp_path, keys, configure=short_timeout)
    world.reconcile()  # stg-1 dispatched, never reports
    world.clock.tick(60)
    assert world.reconcile().idle
    world.clock.tick(TIMEOUT.total_seconds() - 61)
    assert world.reconcile().idle  # a second before the deadline

    world.clock.tick(2)
    assert not world.reconcile().idle
    (record,) = world.state().devices["stg-1"].records
    assert (record.reason, record.status.value) == ("timed_out", "failed")


def robot_reports(world: ControllerWorld) -> None:
    world.report_all(STAGING, "deployed")


def main_moves(world: ControllerWorld) -> None:
    world.fleet.device("extra-1")
    world.merge("one more robot")


def hint_lost(world: ControllerWorld) -> None:
    (world.settings.source.mirror / HINT_FILE).unlink()


def mirror_lost(world: ControllerWorld) -> None:
    shutil.rmtree(world.settings.source.mirror)


def clock_stepped_back_far(world: ControllerWorld) -> None:
    world.clock.now -= FULL_RECONCILE_EVERY * 2  # a mark this far ahead is not trusted


@pytest.mark.parametrize(
    ("change", "idle"),
    [
        (lambda world: None, True),
        (robot_reports, False),
        (main_moves, False),
        (hint_lost, True),  # state.json carries the mark too
        (mirror_lost, False),  # the state commit is not in a fresh mirror: fetch first
        (clock_stepped_back_far, False),
    ],
    ids=["nothing", "robot-reports", "main-moves", "hint-lost", "mirror-lost", "clock-stepped-back"],
)
def test_what_ends_the_idle_path(
    tmp_path: Path, keys: KeyFactory, change: Callable[[ControllerWorld], None], idle: bool
) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    world.clock.tick(5)
    change(world)
    result = reconcile_once(world.settings)
    assert result.stalled is None
    assert result.idle is idle
    assert result.main == str(ref_target(pygit2.Repository(str(world.server)), "refs/heads/main"))


def test_lines_cut_from_the_audit_log_are_caught_even_when_nothing_is_due(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = soaking_staging(tmp_path, keys)
    server = pygit2.Repository(str(world.server))
    meta = world.state().meta
    assert meta.audit_file is not None and meta.audit_seq >= 2
    lines = (read_blob(server, STATE_BRANCH, meta.audit_file) or b"").splitlines(keepends=True)
    head = ref_target(server, STATE_BRANCH)
    assert head is not None
    tree = write_tree(server, {meta.audit_file: b"".join(lines[:-1])}, tree_of(server, head))
    commit(server, STATE_BRANCH, tree, "drop a line", [head], Identity("mallory", "m@x"), world.clock.now)

    world.clock.tick(5)
    stalled = reconcile_once(world.settings)  # a stall recorded, not an error that ends the loop
    assert stalled.stalled is not None and "cut from the end" in stalled.stalled
    with pytest.raises(AuditChainBroken, match="cut from the end"):
        verify(world.state().audit, anchor=audit_anchor(world.state().meta))  # nothing appended


def quick_offline(fleet: FleetRepoBuilder) -> None:
    fleet.fleet["defaults"] = {"offline_after_seconds": 120}


def test_a_robot_going_offline_is_due_without_any_report(tmp_path: Path, keys: KeyFactory) -> None:
    world = soaking_staging(tmp_path, keys, configure=quick_offline)
    world.clock.tick(61)
    assert not world.reconcile().idle  # the soak ended: staging passed, canary dispatched
    seen = world.state().devices["stg-1"].state.last_seen
    assert seen is not None
    world.clock.now = seen + timedelta(seconds=119)
    assert world.reconcile().idle
    world.clock.tick(2)
    assert not world.reconcile().idle
    assert world.state().devices["stg-1"].state.connectivity.value == "offline"


# --- the horizon, pure ----------------------------------------------------------------------------


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("window", "zone", "now"),
    [
        ({"start": "02:00", "end": "03:00"}, "Europe/Berlin", utc("2026-10-24T22:10")),
        ({"start": "01:30", "end": "02:30"}, "Europe/Berlin", utc("2026-03-28T23:50")),
        ({"start": "01:30", "end": "02:30"}, "Europe/Berlin", utc("2026-03-29T00:40")),
        ({"start": "22:00", "end": "04:00", "days": ["fri"]}, "America/Chicago", utc("2026-11-01T05:00")),
        ({"start": "00:00", "end": "00:00"}, "Asia/Tokyo", utc("2026-05-04T09:00")),
        ({"start": "23:30", "end": "00:15", "timezone": "Asia/Kathmandu"}, "UTC", utc("2026-05-04T17:00")),
    ],
    ids=[
        "fall-back-night-berlin",
        "spring-forward-gap-end-berlin",
        "spring-forward-inside-berlin",
        "friday-night-across-chicago-dst",
        "whole-day-tokyo",
        "kathmandu-quarter-hour-offset",
    ],
)
def test_no_window_opens_or_closes_before_the_horizon(
    window: dict[str, object], zone: str, now: datetime
) -> None:
    windows = [MaintenanceWindow.model_validate(window)]
    own = windows[0].timezone or zone
    horizon = min(window_changes({(windows[0].start, own), (windows[0].end, own)}, now))
    assert horizon > now
    opened = window_open(windows, now, zone)
    step, at = timedelta(minutes=1), now
    while at < horizon:
        assert window_open(windows, at, zone) == opened, f"flipped at {at} before the horizon {horizon}"
        at += step
    flips = [
        now + step * i for i in range(1, 3 * 24 * 60) if window_open(windows, now + step * i, zone) != opened
    ]
    assert not flips or horizon <= flips[0]


@pytest.mark.parametrize(
    "strategy",
    [
        Rolling(type="rolling", batch_size=2, delay_seconds=120),
        Canary(type="canary", percent=25, soak_seconds=900),
        Waves.model_validate(
            {
                "type": "waves",
                "waves": [
                    {"name": "a", "percent": 50, "soak_seconds": 30},
                    {"name": "b", "percent": 100, "soak_seconds": 45},
                ],
            }
        ),
        AllAtOnce(type="all_at_once"),
        BlueGreen(type="blue_green"),
    ],
    ids=["rolling", "canary", "waves", "all-at-once", "blue-green"],
)
def test_the_soak_the_horizon_assumes_is_the_one_the_planner_plans(strategy: Strategy) -> None:
    devices = [f"r-{i}" for i in range(7)]
    for wave in plan_waves("nav", strategy, devices, {}, {}):
        if wave.soak_seconds:  # only a wave with a soak can be soaking
            assert soak_seconds(strategy, wave.index) == wave.soak_seconds


def test_a_stalled_main_takes_the_fast_path_and_is_audited_once(tmp_path: Path, keys: KeyFactory) -> None:
    world = make_world(tmp_path, keys)
    world.reconcile()
    world.fleet.file("cohorts/broken.yaml", "apiVersion: fleetcd.dev/v1\nkind: Cohort\nname: [\n")
    world.merge("a cohort that does not parse")
    world.clock.tick(5)
    stalled = reconcile_once(world.settings)
    assert stalled.stalled is not None and "cohorts/broken.yaml" in stalled.stalled
    assert not stalled.idle and [e.kind.value for e in stalled.events] == ["stalled"]

    world.clock.tick(5)
    again = reconcile_once(world.settings)
    assert (again.idle, again.stalled, again.state_commit, again.events) == (True, stalled.stalled, None, [])
    world.report_all(STAGING, "deployed")  # not ingested while main stalls: no reason to look
    world.clock.tick(5)
    assert reconcile_once(world.settings).idle

    for _ in range(3):  # the full path every FULL_RECONCILE_EVERY, also past midnight: logged once
        world.clock.tick(FULL_RECONCILE_EVERY.total_seconds() + 8 * 3600)
        late = reconcile_once(world.settings)
        assert not late.idle and late.stalled == stalled.stalled and late.events == []
    state = world.state()
    assert [line["event"]["kind"] for line in audit_lines(state)].count("stalled") == 1
    assert_no_duplicates(state)

    world.fleet.remove("cohorts/broken.yaml")
    world.merge("fixed")
    world.clock.tick(5)
    fixed = reconcile_once(world.settings)
    assert fixed.stalled is None and not fixed.idle
    assert world.state().meta.stalled_commit is None
    assert world.wave("staging") is WavePhase.SOAKING  # the reports waited, and count now


# --- the kept listing of a local server ----------------------------------------------------------------


def counted_listings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the idle check parses the server's refs (the real parse still runs)."""
    calls: list[int] = []
    real = RefStorage.refs

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(RefStorage, "refs", counting)
    return calls


def settled(tmp_path: Path, keys: KeyFactory) -> ControllerWorld:
    """A fleet reconciled, then idle once: the idle check has listed the server and kept the listing."""
    world = make_world(tmp_path, keys)
    world.reconcile()
    world.clock.tick(5)
    assert reconcile_once(world.settings).idle
    assert (world.settings.source.mirror / LISTING_FILE).is_file()
    return world


def test_an_idle_check_reads_the_kept_listing_while_the_servers_ref_bytes_are_unchanged(
    tmp_path: Path, keys: KeyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = settled(tmp_path, keys)
    listings = counted_listings(monkeypatch)
    for _ in range(3):
        world.clock.tick(1)
        assert reconcile_once(world.settings).idle
    assert listings == []


def report_loose(world: ControllerWorld) -> None:
    world.sim.push_report("stg-1", world.clock.now)


def report_then_pack(world: ControllerWorld) -> None:
    world.sim.push_report("stg-1", world.clock.now)
    git("pack-refs", "--all", cwd=world.server)


def only_packed(world: ControllerWorld) -> None:
    git("update-ref", "refs/heads/scratch", "refs/heads/main", cwd=world.server)
    git("pack-refs", "--all", cwd=world.server)
    git("update-ref", "-d", "refs/heads/scratch", cwd=world.server)  # the same refs, other bytes


def desired_ref_deleted(world: ControllerWorld) -> None:
    git("update-ref", "-d", delivery_ref("stg-1", namespaces=True), cwd=world.server)


def kept_listing_garbage(world: ControllerWorld) -> None:
    (world.settings.source.mirror / LISTING_FILE).write_bytes(b'{"fingerprint": 1')


@pytest.mark.parametrize(
    ("change", "idle_after", "listed"),
    [
        (report_loose, False, 1),
        (report_then_pack, False, 1),
        (only_packed, True, 1),
        (desired_ref_deleted, False, 1),
        (kept_listing_garbage, True, 1),
    ],
    ids=[
        "report-loose",
        "report-packed",
        "same-refs-repacked",
        "desired-ref-deleted",
        "garbage-kept-listing",
    ],
)
def test_what_the_kept_listing_never_hides(
    tmp_path: Path,
    keys: KeyFactory,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[ControllerWorld], None],
    idle_after: bool,
    listed: int,
) -> None:
    world = settled(tmp_path, keys)
    change(world)
    listings = counted_listings(monkeypatch)
    world.clock.tick(1)
    assert reconcile_once(world.settings).idle is idle_after
    assert len(listings) == listed


def test_the_kept_listing_is_made_from_the_bytes_it_is_kept_under(tmp_path: Path, keys: KeyFactory) -> None:
    """A ref that moves and moves back while the controller is not looking leaves the same bytes,
    and then the same refs: the kept listing is a function of those bytes, not of a listing taken a
    moment later. Here main moves to another commit and back: still idle."""
    world = settled(tmp_path, keys)
    main = git("rev-parse", "refs/heads/main", cwd=world.server).strip()
    storage = read_ref_storage(world.server)
    assert storage is not None
    listed = storage.refs(("refs/heads/main", "refs/fleetcd/status/"))
    assert listed["refs/heads/main"] == main
    git("update-ref", "refs/heads/main", STATE_BRANCH, cwd=world.server)  # any other commit
    moved = read_ref_storage(world.server)
    assert moved is not None and moved.fingerprint != storage.fingerprint
    git("update-ref", "refs/heads/main", main, cwd=world.server)
    back = read_ref_storage(world.server)
    assert back is not None and back.fingerprint == storage.fingerprint
    world.clock.tick(1)
    assert reconcile_once(world.settings).idle
