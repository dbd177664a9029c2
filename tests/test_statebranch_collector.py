"""The cycle collector is held off while state files are parsed (``collector_paused``).

Parsing 100,000 device files allocates enough to set off full collections over a controller's
whole heap; the models hold no cycles, so the collector is paused for the parse. What must hold:
it runs again afterwards (also when the parse fails, and not if the caller had it off), and a
load or a write through the cache gives the same snapshot as a cold read with it running.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pygit2
import pytest

from controller.reconcile.statebranch import StateCache, collector_paused, dump, load_state, write_state
from controller.records.model import Connectivity, DeviceState
from controller.state.layout import META_FILE, device_file
from controller.state.model import ControllerMeta, DeviceFile
from fleetcd.compat import UTC
from tests.gitrepos import bare_repo

WHEN = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def collector() -> Iterator[list[str]]:
    """The collector on with the lowest thresholds, every collection's start recorded."""
    started: list[str] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(phase)

    was, thresholds = gc.isenabled(), gc.get_threshold()
    gc.enable()
    gc.set_threshold(1, 1, 1)
    gc.callbacks.append(seen)
    try:
        yield started
    finally:
        gc.callbacks.remove(seen)
        gc.set_threshold(*thresholds)
        if not was:
            gc.disable()


def test_no_collection_runs_inside_the_block_and_the_collector_runs_again_after(collector: list[str]) -> None:
    with collector_paused():
        assert not gc.isenabled()
        collector.clear()  # what ran before the block
        garbage = [[i] for i in range(2_000)]  # would set off collections at threshold 1
        assert collector == []
    assert gc.isenabled() and garbage
    more = [[i] for i in range(100)]
    assert collector and more


def test_a_failing_parse_turns_the_collector_back_on(collector: list[str]) -> None:
    with pytest.raises(ValueError), collector_paused():
        DeviceFile.model_validate_json(b'{"format": 1}')
    assert gc.isenabled()


def test_a_collector_the_caller_turned_off_stays_off() -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()


def test_loads_and_writes_with_the_collector_paused_equal_a_cold_read(
    tmp_path: Path, collector: list[str]
) -> None:
    repo = pygit2.Repository(str(bare_repo(tmp_path / "state.git")))
    files: dict[str, bytes | None] = {META_FILE: dump(ControllerMeta())}
    for i in range(300):
        state = DeviceState(device=f"robot-{i:03d}", connectivity=Connectivity.ONLINE, last_seen=WHEN)
        files[device_file(f"robot-{i:03d}")] = dump(DeviceFile(state=state, last_report_seq=i))
    cache = StateCache()
    write_state(repo, load_state(repo, cache=cache), files, "first", WHEN, cache=cache)
    assert gc.isenabled() and cache.parsed == 301
    warm = load_state(repo, cache=cache)
    cold = load_state(repo)
    assert warm.devices == cold.devices and len(cold.devices) == 300
    assert gc.isenabled()
