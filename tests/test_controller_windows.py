"""Maintenance windows across daylight-saving changes, at the reconcile level (injected clock).

The staging robot lives in Europe/Berlin with a 02:00–03:00 window. On the fall-back night
(2026-10-25) the clock shows 02:xx twice, so the window lasts two real hours; on the
spring-forward night (2026-03-29) 02:xx does not exist and the window does not occur. Outside a
window nothing is dispatched and the wave waits with reason ``maintenance_window``; a later clock
tick inside a window dispatches without any new commit.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from controller.state.model import WavePhase
from fleetcd.compat import UTC
from fleetcd.desired.bundle import Bundle
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.sim.world import ControllerWorld, make_world


def night_window(fleet: FleetRepoBuilder) -> None:
    fleet.device("stg-1", timezone="Europe/Berlin", maintenance_windows=[{"start": "02:00", "end": "03:00"}])


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def staging(world: ControllerWorld) -> tuple[WavePhase, str | None]:
    (wave,) = [w for w in world.state().rollouts["nav"].waves if w.name == "staging"]
    return wave.phase, wave.reason


def versions(bundle: Bundle) -> list[str]:
    return [d.version for d in bundle.deployments]


@pytest.mark.parametrize(
    ("now", "dispatched"),
    [
        (utc("2026-10-25T00:30"), True),
        (utc("2026-10-25T01:30"), True),
        (utc("2026-10-25T02:30"), False),
        (utc("2026-10-24T23:30"), False),
        (utc("2026-03-29T01:30"), False),
        (utc("2026-03-29T00:30"), False),
    ],
    ids=[
        "fall-back-02:30-CEST",
        "fall-back-02:30-CET-second-time",
        "fall-back-03:30-CET",
        "fall-back-eve-01:30-CEST",
        "spring-forward-03:30-CEST",
        "spring-forward-01:30-CET",
    ],
)
def test_maintenance_window_in_the_robots_zone_across_dst(
    tmp_path: Path, keys: KeyFactory, now: datetime, dispatched: bool
) -> None:
    world = make_world(tmp_path, keys, start=now, configure=night_window)
    world.reconcile()
    if dispatched:
        assert versions(world.sim.bundle("stg-1", now)) == ["1.0.0"]
        assert staging(world) == (WavePhase.RUNNING, None)
    else:
        assert versions(world.sim.bundle("stg-1", now)) == []
        assert staging(world) == (WavePhase.WAITING, "maintenance_window")
    assert all(versions(world.sim.bundle(d, now)) == [] for d in ["can-1", "prod-1"])


def test_a_clock_tick_into_the_window_dispatches_without_a_new_commit(
    tmp_path: Path, keys: KeyFactory
) -> None:
    world = make_world(tmp_path, keys, start=utc("2026-10-25T02:30"), configure=night_window)
    world.reconcile()
    assert staging(world) == (WavePhase.WAITING, "maintenance_window")
    world.clock.now = utc("2026-10-25T23:30")  # 00:30 CET: still outside
    assert world.reconcile().desired_refs == 0
    main = world.state().meta.last_processed_commit

    world.clock.now = utc("2026-10-26T01:15")  # 02:15 CET, the next night
    world.reconcile()
    assert versions(world.sim.bundle("stg-1", world.clock.now)) == ["1.0.0"]
    assert staging(world) == (WavePhase.RUNNING, None)
    assert world.state().meta.last_processed_commit == main
