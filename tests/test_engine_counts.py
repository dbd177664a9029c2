"""Wave counts taken from the robots with a deployment equal a count of every robot of the wave.

The engine counts a wave by looking up only the robots the ledger holds a deployment for
(:meth:`controller.engine.ledger.Ledger.recorded`); every other robot of the wave is queued
without a lookup (:func:`controller.engine.gates.count_wave` with ``recorded``). These tests check
that against the count that looks up every robot: directly over random waves, records and
connectivity; over random ledgers (deployments of several releases, earlier generations carried
or archived, records written during the tick); and after every tick of seeded random rollouts
(reports, failures, pauses, aborts, halts, rollbacks, cohort edits, retirements). And a robot
whose file holds a record naming another robot's deployment changes neither that robot's
counts nor its records.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from controller.engine import gates
from controller.engine.inputs import NO_CONFIG
from controller.engine.journal import Journal
from controller.engine.ledger import Ledger
from controller.engine.progress import Tick
from controller.records import Connectivity, DeploymentRecord, DeviceState, apply_report, new_deployment
from controller.records.model import Action, TargetStatus
from controller.records.transitions import archive, time_out
from controller.state.model import DeviceFile, WaveCounts
from fleetcd.models.rollout import FailureThreshold
from fleetcd.planning.waves import PlannedWave, WaveAction
from fleetcd.reasons import RecordReason
from tests.sim.engine import SHA_NEW, SHA_OLD, T0, Sim, robots, rollout_doc
from tests.test_engine_properties import Walk

SEEDS = range(30)
TICKS = 30
ROLLOUT = "r"
SHAS = (SHA_NEW, SHA_OLD, "2" * 64)
# Report sequences a deployment may have been through (the last step's error where it failed).
HISTORIES: tuple[tuple[tuple[str, ...], str], ...] = (
    ((), "none"),
    (("downloading",), "none"),
    (("downloading", "applying", "watching", "deployed"), "none"),
    (("downloading", "applying", "failed"), "failed"),
    (("downloading", "applying", "watching", "rolled_back"), "none"),
    (("downloading", "retrying"), "retrying"),
)


def deployment(device: str, generation: int, sha: str, rng: random.Random) -> DeploymentRecord:
    """A random record of ``device``: some reports in, sometimes timed out, archived or staged."""
    staged = rng.random() < 0.15
    record = new_deployment(
        rollout=ROLLOUT, generation=generation, device=device, app="navstack", version="1.1.0",
        release_sha256=sha, wave=0, action=Action.STAGE if staged else Action.DEPLOY,
        target_status=TargetStatus.STAGED if staged else TargetStatus.DEPLOYED, at=T0,
        deadline_at=T0 + timedelta(hours=1),
    )  # fmt: skip
    steps, error = rng.choice(HISTORIES)
    for step in steps:
        record = apply_report(record, step, error if step == steps[-1] else "none", "", T0)
    roll = rng.random()
    if roll < 0.1:
        record = archive(record, T0, RecordReason.ABORTED)
    elif roll < 0.2 and record.activity.value in ("queued", "downloading"):
        record = time_out(record, T0 + timedelta(hours=2))
    return record


def random_files(rng: random.Random, devices: list[str]) -> dict[str, DeviceFile]:
    """Files of ``devices``: none, this generation's (one of three releases) and an earlier one."""
    files: dict[str, DeviceFile] = {}
    for device in devices:
        records = []
        if rng.random() < 0.5:
            records.append(deployment(device, 2, rng.choice(SHAS), rng))
        if rng.random() < 0.3:
            records.append(deployment(device, 1, rng.choice(SHAS[:2]), rng))
        seen = T0 - timedelta(seconds=rng.choice([0, 30, 7200]))
        state = DeviceState(device=device, last_seen=seen if rng.random() < 0.8 else None)
        files[device] = DeviceFile(state=state, records=tuple(records))
    return files


def plan(devices: tuple[str, ...], action: WaveAction) -> PlannedWave:
    return PlannedWave(0, "w", devices, 0, FailureThreshold(count=0), 100.0, False, action)


@pytest.mark.parametrize("seed", range(200))
def test_a_count_of_the_recorded_robots_equals_a_count_of_every_robot(seed: int) -> None:
    rng = random.Random(seed)
    pool = robots(rng.randint(0, 30))
    devices = rng.sample(pool, rng.randint(0, len(pool)))
    if devices and rng.random() < 0.2:
        devices.append(rng.choice(devices))  # a robot listed twice is counted twice, as before
    wave = plan(tuple(devices), rng.choice(list(WaveAction)))
    files = random_files(rng, pool)
    records = {d: r for d, f in files.items() for r in f.records[:1] if rng.random() < 0.8}
    links = {d: rng.choice(list(Connectivity)) for d in pool}
    extra = set(rng.sample(robots(40, "ghost"), 5))  # robots of no wave: a superset is fine
    recorded = set(records) | (extra if rng.random() < 0.5 else set())
    cold = gates.count_wave(wave, records.get, links.__getitem__)
    assert gates.count_wave(wave, records.get, links.__getitem__, recorded) == cold
    assert cold.total == len(devices)


@pytest.mark.parametrize("seed", range(100))
def test_the_ledger_names_every_robot_it_finds_a_deployment_for(seed: int) -> None:
    """``recorded(sha)`` holds every robot ``find(robot, sha)`` answers for, before and after
    records are written during the tick (a dispatch, an archive)."""
    rng = random.Random(seed)
    pool = robots(rng.randint(1, 25))
    files = random_files(rng, pool)
    configs = {d: NO_CONFIG for d in pool if rng.random() < 0.8}  # the config an earlier record ran
    ledger = Ledger(files, ROLLOUT, 2, SHA_NEW, configs)
    carried = 0
    for _ in range(3):
        for sha in SHAS:
            found = {d for d in pool if ledger.find(d, sha) is not None}
            assert found <= ledger.recorded(sha), sha
        carried += sum(1 for d in pool if ledger.carried(d) is not None)
        device = rng.choice(pool)
        ledger.put(deployment(device, 2, rng.choice(SHAS), rng))
    CARRIED.append(carried)


CARRIED: list[int] = []  # robots carrying an earlier record, per seed: some seeds must have them


def test_some_random_ledgers_carry_earlier_records() -> None:
    for seed in range(100):
        test_the_ledger_names_every_robot_it_finds_a_deployment_for(seed)
    assert sum(1 for n in CARRIED if n) >= 10


def cold_counts(sim: Sim) -> list[WaveCounts]:
    """Each wave of the sim's state counted over every robot of it, as the engine reads them."""
    inp, state = sim.input(), sim.rollout_state
    ledger = Ledger(
        inp.device_files, inp.rollout.name, inp.generation.number, inp.release_sha256, inp.configs
    )
    tick = Tick(
        inp=inp,
        ledger=ledger,
        journal=Journal(inp.rollout.name, inp.commit, inp.generation.number, inp.now),
        phase=state.phase,
        reason=state.reason,
        waves=list(state.waves),
        promote_seen=state.promote_seen,
        rolled_back=set(state.rolled_back_devices),
        planned={p.index: p for p in inp.planned},
    )
    sha = inp.release_sha256
    return [gates.count_wave(tick.plan(w), lambda d: ledger.find(d, sha), tick.link) for w in state.waves]


class CountedWalk(Walk):
    def step(self) -> None:
        super().step()
        state = self.sim.rollout_state
        assert [w.counts for w in state.waves] == cold_counts(self.sim), f"{state.phase}"


@pytest.mark.parametrize("seed", SEEDS)
def test_every_wave_count_equals_a_count_of_every_robot_after_every_random_tick(seed: int) -> None:
    walk = CountedWalk(seed)
    for _ in range(TICKS):
        walk.step()


@pytest.mark.parametrize("seed", range(15))
def test_wave_counts_equal_a_full_count_through_cohort_edits_and_retirements(seed: int) -> None:
    walk = CountedWalk(1000 + seed, churn=True)
    for _ in range(TICKS):
        walk.step()


def forge(sim: Sim, mallory: str, victim: str, *steps: str, error: str = "none") -> None:
    """``mallory``'s file gains a copy of ``victim``'s deployment moved by ``steps``."""
    forged = sim.record(victim)
    assert forged is not None
    for step in steps:
        forged = apply_report(forged, step, error if step == steps[-1] else "none", "forged", sim.now)
    file = sim.files[mallory]
    sim.files[mallory] = file.model_copy(update={"records": (*file.records, forged)})


def test_attack_a_robot_holding_a_failed_copy_of_another_robots_deployment_does_not_halt_the_rollout() -> (
    None
):
    """With a zero failure budget, one failure halts the rollout: a forged failure in mallory's
    file must not count as the victim's (nor be written into the victim's file)."""
    ids = robots(4)
    sim = Sim(rollout_doc(ids, {"type": "all_at_once", "failure_threshold": {"count": 0}}))
    sim.tick()
    victim, mallory = ids[0], ids[1]
    forge(sim, mallory, victim, "downloading", "applying", "failed", error="failed")
    sim.tick(timedelta(seconds=5))
    counts = sim.rollout_state.waves[0].counts
    assert (counts.failed, counts.queued, sim.phase().value) == (0, 4, "progressing")
    assert [r.device for r in sim.files[victim].records] == [victim]
    victim_record = sim.record(victim)
    assert victim_record is not None and victim_record.activity.value == "queued"


def test_attack_a_robot_holding_a_succeeded_copy_of_another_robots_deployment_does_not_pass_its_wave() -> (
    None
):
    ids = robots(3)
    sim = Sim(rollout_doc(ids, {"type": "all_at_once", "failure_threshold": {"count": 0}}))
    sim.tick()
    sim.succeed(ids[1], ids[2])
    forge(sim, ids[1], ids[0], "downloading", "applying", "watching", "deployed")
    sim.tick(timedelta(seconds=5))
    counts = sim.rollout_state.waves[0].counts
    assert (counts.succeeded, counts.queued) == (2, 1)
    assert sim.rollout_state.waves[0].counts == cold_counts(sim)[0]
    sim.succeed(ids[0])  # the victim's own report still counts
    sim.tick(timedelta(seconds=5))
    assert sim.rollout_state.waves[0].counts.succeeded == 3
