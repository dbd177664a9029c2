"""The ledger index kept between ticks (``controller run``) equals the one built from every file.

:class:`~controller.engine.ledger.LedgerMemo` keeps a rollout's index at the end of a tick; the
next tick of the same generation reads again only the robots whose device file is another
object (:class:`~controller.reconcile.fleetmap.Tracked`) and those the last tick gave records.
These tests run seeded random rollouts (reports, failures, pauses, aborts, halts, rollbacks,
cohort edits, retirements, config edits starting a new generation) with files changed behind the
engine's back between ticks (records archived, robots' files dropped, equal copies, forged
records naming other robots), and after every tick compare the kept index with a cold one and
the kept tick's decisions with a cold tick's. A tick that raises leaves nothing to reuse, and a
forged record claiming another robot's id in the robot's own name is never kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from controller.engine.advance import advance
from controller.engine.inputs import EngineInput
from controller.engine.ledger import Ledger, LedgerMemo
from controller.reconcile.fleetmap import Tracked
from controller.records.transitions import archive
from controller.state.model import DeviceFile
from fleetcd.reasons import RecordReason
from tests.sim.engine import Sim, robots, rollout_doc
from tests.test_engine_properties import Walk

TICKS = 30


@dataclass
class KeptLedger:
    """One rollout's memo and the device files it last saw (the plan step keeps one map for all
    rollouts: tests/test_reconcile_ledgers.py)."""

    # Patched however many of the few robots changed (the default builds past a quarter of them).
    ledger: LedgerMemo = field(default_factory=lambda: LedgerMemo(most_changed=1.0))
    files: Tracked[DeviceFile] = field(default_factory=Tracked)


def index_of(ledger: Ledger) -> tuple[object, ...]:
    """Everything a ledger answers from: its records by id (in order), by (robot, release), by
    release, the earlier generations' and the delivered ids."""
    return (
        [(r.id, r) for r in ledger.ours()],
        ledger._current,
        {sha: devices for sha, devices in ledger._devices_of.items()},
        ledger._earlier,
        ledger._delivered,
    )


def cold(inp: EngineInput) -> Ledger:
    return Ledger(inp.device_files, inp.rollout.name, inp.generation.number, inp.release_sha256, inp.configs)


class KeptWalk(Walk):
    """The random walk of tests/test_engine_properties, each tick also run through a kept ledger."""

    def __init__(self, seed: int, *, churn: bool = False) -> None:
        super().__init__(seed, churn=churn)
        self.kept = KeptLedger()
        self.patched = 0  # ticks that started from the kept index

    def meddle(self) -> None:
        """Files changed between ticks by others than the engine (a state branch edited by hand,
        an ingest): the kept index must see every one of them."""
        sim, rng = self.sim, self.rng
        if not sim.files:
            return
        dev = rng.choice(sorted(sim.files))
        roll = rng.random()
        file = sim.files[dev]
        if roll < 0.1:
            del sim.files[dev]  # the robot's file gone: nothing of it may stay in the index
        elif roll < 0.2:
            sim.files[dev] = file.model_copy()  # an equal file, another object
        elif roll < 0.3 and file.records:
            records = tuple(
                archive(r, sim.now, RecordReason.ABORTED) if r.target_status.value != "archived" else r
                for r in file.records
            )
            sim.files[dev] = file.model_copy(update={"records": records})
        elif roll < 0.4:
            other = rng.choice(sorted(sim.files))  # mallory's file gains a copy of another's records
            copied = sim.files[other].records
            sim.files[dev] = file.model_copy(update={"records": (*file.records, *copied)})
        elif roll < 0.45:
            sim.set_config({"speed": rng.randint(1, 3)})  # a config edit: a new generation

    def step(self) -> None:
        self.robots_act()
        self.operator_acts()
        self.meddle()
        sim = self.sim
        sim.now += timedelta(seconds=self.rng.choice([5, 30, 61, 300, 700, 1000]))
        inp = sim.input()
        rebuilt = self.kept.ledger.rebuilt
        changed = self.kept.files.changes(inp.device_files)
        kept = Ledger(
            inp.device_files,
            inp.rollout.name,
            inp.generation.number,
            inp.release_sha256,
            inp.configs,
            memo=self.kept.ledger,
            changed=changed,
        )
        assert index_of(kept) == index_of(cold(inp))
        self.patched += self.kept.ledger.rebuilt == rebuilt
        kept.settle()
        out = advance(inp, memo=self.kept.ledger, changed=())
        assert out == advance(inp), "the kept ledger decided otherwise than a cold one"
        sim.apply(out)
        if self.churn:
            self.fleet_changes()


@pytest.mark.parametrize("seed", range(20))
def test_the_kept_ledger_equals_a_cold_one_after_every_random_tick(seed: int) -> None:
    walk = KeptWalk(seed)
    for _ in range(TICKS):
        walk.step()
    assert walk.patched > TICKS // 2  # most ticks patched the kept index, not built it again


@pytest.mark.parametrize("seed", range(10))
def test_the_kept_ledger_equals_a_cold_one_through_cohort_edits_and_retirements(seed: int) -> None:
    walk = KeptWalk(2000 + seed, churn=True)
    for _ in range(TICKS):
        walk.step()


def started(count: int = 4) -> tuple[Sim, KeptLedger]:
    """A rollout dispatched to ``count`` robots, its ledger kept from the first tick."""
    sim = Sim(rollout_doc(robots(count), {"type": "all_at_once"}))
    kept = KeptLedger()
    tick(sim, kept)
    return sim, kept


def tick(sim: Sim, kept: KeptLedger) -> None:
    inp = sim.input()
    out = advance(inp, memo=kept.ledger, changed=kept.files.changes(inp.device_files))
    assert out == advance(inp)
    sim.apply(out)


def test_a_tick_that_raises_leaves_nothing_half_patched_to_reuse() -> None:
    sim, kept = started()
    inp = sim.input()
    ledger = Ledger(
        inp.device_files, inp.rollout.name, inp.generation.number, inp.release_sha256, inp.configs,
        memo=kept.ledger, changed=kept.files.changes(inp.device_files),
    )  # fmt: skip
    assert kept.ledger.kept is None  # taken while the tick runs
    record = ledger.ours()[0]
    ledger.put(archive(record, sim.now, RecordReason.ABORTED))  # the tick edits, then raises: no settle
    rebuilt = kept.ledger.rebuilt
    fresh = Ledger(
        inp.device_files, inp.rollout.name, inp.generation.number, inp.release_sha256, inp.configs,
        memo=kept.ledger, changed=kept.files.changes(inp.device_files),
    )  # fmt: skip
    assert kept.ledger.rebuilt == rebuilt + 1  # built from every file again
    assert index_of(fresh) == index_of(cold(inp))
    assert fresh.find(record.device, record.release_sha256) == record  # the unsaved archive is not there


def test_a_robot_whose_file_left_does_not_come_back_from_the_kept_ledger() -> None:
    sim, kept = started()
    gone = sorted(sim.files)[0]
    assert sim.record(gone) is not None
    del sim.files[gone]
    inp = sim.input()
    ledger = Ledger(
        inp.device_files, inp.rollout.name, inp.generation.number, inp.release_sha256, inp.configs,
        memo=kept.ledger, changed=kept.files.changes(inp.device_files),
    )  # fmt: skip
    assert ledger.find(gone, inp.release_sha256) is None
    assert gone not in ledger.recorded(inp.release_sha256)
    assert all(r.device != gone for r in ledger.ours())
    assert index_of(ledger) == index_of(cold(inp))


def test_attack_a_forged_record_in_another_robots_file_does_not_enter_the_kept_ledger() -> None:
    """Mallory's file gains a failed copy of the victim's deployment after the index was kept: the
    patched index, like a cold one, leaves it out, and the victim's record stays its own."""
    sim, kept = started()
    victim, mallory = sorted(sim.files)[:2]
    record = sim.record(victim)
    assert record is not None
    forged = archive(record, sim.now, RecordReason.ABORTED)
    file = sim.files[mallory]
    sim.files[mallory] = file.model_copy(update={"records": (*file.records, forged)})
    tick(sim, kept)
    held = kept.ledger.kept
    assert held is not None and held.ours[record.id].target_status.value == "deployed"
    assert [r.device for r in sim.files[victim].records] == [victim]


def test_attack_a_record_claiming_another_robots_id_in_its_own_name_is_never_kept() -> None:
    """A forged state branch: mallory's file holds a record in mallory's name with the victim's
    deployment id. Two robots then share one id in the index: nothing is kept (each tick builds
    from every file, as a cold one does) until the forgery is gone."""
    sim, kept = started()
    victim, mallory = sorted(sim.files)[:2]
    record = sim.record(victim)
    assert record is not None
    forged = record.model_copy(update={"device": mallory})
    file = sim.files[mallory]
    sim.files[mallory] = file.model_copy(update={"records": (*file.records, forged)})
    tick(sim, kept)
    assert kept.ledger.kept is None
    rebuilt = kept.ledger.rebuilt
    tick(sim, kept)
    assert kept.ledger.rebuilt == rebuilt + 1
    sim.files[mallory] = file  # the forgery removed: kept again from the next tick
    tick(sim, kept)
    assert kept.ledger.kept is not None
    rebuilt = kept.ledger.rebuilt
    tick(sim, kept)
    assert kept.ledger.rebuilt == rebuilt


def test_a_new_generation_builds_the_index_again() -> None:
    sim, kept = started()
    rebuilt = kept.ledger.rebuilt
    tick(sim, kept)
    assert kept.ledger.rebuilt == rebuilt  # the same generation: patched
    sim.set_config({"speed": 2})
    tick(sim, kept)
    assert kept.ledger.rebuilt == rebuilt + 1
    assert kept.ledger.kept is not None and kept.ledger.kept.key[1] == sim.rollout_state.generation


def test_a_ledger_without_a_memo_keeps_nothing() -> None:
    sim, _ = started()
    memo = LedgerMemo()
    inp = sim.input()
    ledger = cold(inp)
    ledger.settle()
    assert memo.kept is None
    files: Tracked[DeviceFile] = Tracked()
    assert files.changes(inp.device_files) == set(inp.device_files)  # the first tick: every robot


def test_past_a_quarter_of_the_robots_changed_the_index_is_built_again() -> None:
    """An ingest at a small fleet changes most robots: a build from every file then costs less."""
    sim = Sim(rollout_doc(robots(8), {"type": "all_at_once"}))
    kept = KeptLedger(ledger=LedgerMemo())
    tick(sim, kept)
    rebuilt = kept.ledger.rebuilt
    tick(sim, kept)  # the robots the first tick dispatched to (all 8) are read again: built
    assert kept.ledger.rebuilt == rebuilt + 1
    tick(sim, kept)  # nothing changed: patched
    assert kept.ledger.rebuilt == rebuilt + 1
    sim.succeed(*robots(8)[:2])  # 2 of 8: patched
    tick(sim, kept)
    assert kept.ledger.rebuilt == rebuilt + 1
    sim.succeed(*robots(8)[2:5])  # 3 of 8: built
    tick(sim, kept)
    assert kept.ledger.rebuilt == rebuilt + 2
