"""Seeded random walks through the rollout engine: the rules that must hold on every tick.

The scenario tests (``test_engine_*``) each pin one story. Here a fixed list of seeds drives
random fleets, strategies, gates, halt policies, rate limits and robot reports (successes,
failures, agent rollbacks, silence, pause and abort) through :func:`controller.engine.advance`
via the engine simulator, and after every tick checks what an operator relies on whatever
happened before:

* a robot is dispatched only in its own (first) wave, once every earlier wave passed its gate
  and its soak, never while the rollout is paused, aborted or halted, and never past the
  download rate limit;
* a wave fails exactly when its failure threshold is crossed, and passes only with its gate met;
* rollbacks go to the previous release, only to robots of the waves ``on_halt`` names, and
  every robot that ran the new release and did not restore the old one itself gets one;
* no robot waits without a reason: every robot without a deployment has one hold reason
  (controller/state/holds.py), a running wave has dispatched all its robots, and a waiting
  wave's window and rate-limit holds are true at that instant;
* the decision does not depend on the order the inputs arrive in, and the output fed back at the
  same ``now`` decides nothing more (a restarted reconcile repeats nothing);
* blue/green: the switch is ordered only to robots that staged, after the stage wave passed,
  and a robot that only staged is never rolled back;
* with cohort edits, retirements and promotions between ticks (no new generation): a robot that
  left or was decommissioned keeps no open order, and each manual wave consumes one promotion;
  nothing is dispatched before ``not_before`` or of a withdrawn release, and nothing is rolled
  back to a withdrawn previous release.

Seeds are fixed, so a failure is reproducible: the seed is in the test id.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from controller.audit.events import AuditKind
from controller.engine import EngineInput, advance
from controller.records import Action, DeploymentRecord, is_terminal
from controller.state.holds import Holds
from controller.state.model import RolloutPhase, RolloutState, WaveCounts, WavePhase, WaveState
from fleetcd.models.rollout import FailureThreshold, HaltPolicy
from fleetcd.planning.waves import PlannedWave, effective_strategy, plan_waves
from fleetcd.planning.windows import window_open
from fleetcd.reasons import HoldReason
from tests.sim.engine import SHA_NEW, SHA_OLD, T0, Sim, device, robots, rollout_doc

SEEDS = range(40)
TICKS = 30
_SWITCHED = frozenset({"applying", "watching", "deployed"})


def _threshold(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.5:
        return {"count": rng.randint(0, 2)}
    return {"percent": rng.choice([0, 10, 25, 50])}


def _strategy(rng: random.Random, manual: bool = False) -> dict[str, Any]:
    kind = rng.choice(["all_at_once", "rolling", "canary", "waves"])
    threshold = _threshold(rng)
    if kind == "all_at_once":
        return {"type": kind, "failure_threshold": threshold}
    if kind == "rolling":
        batch, delay = rng.randint(1, 4), rng.choice([0, 60, 600])
        return {"type": kind, "batch_size": batch, "delay_seconds": delay, "failure_threshold": threshold}
    if kind == "canary":
        soak = rng.choice([1, 120, 900])
        return {
            "type": kind,
            "percent": rng.choice([5, 20, 50]),
            "soak_seconds": soak,
            "failure_threshold": threshold,
        }
    waves = [
        {
            "name": f"w{i + 1}",
            "percent": rng.choice([10, 30, 50, 100]),
            "soak_seconds": rng.choice([1, 60, 600]),
            "min_reported_percent": rng.choice([50, 80, 100]),
            "failure_threshold": _threshold(rng),
            "manual_promotion": manual and rng.random() < 0.5,
        }
        for i in range(rng.randint(1, 3))
    ]
    waves[-1]["percent"] = 100  # everyone is placed
    return {"type": "waves", "waves": waves}


def _crossed(wave: WaveState, counts: WaveCounts) -> bool:
    gate = wave.gate
    assert gate is not None
    threshold = FailureThreshold(count=gate.failure_threshold_count, percent=gate.failure_threshold_percent)
    return threshold.crossed(counts.failed + counts.rolled_back + counts.timed_out, counts.total)


def _first_wave(sim: Sim) -> dict[str, int]:
    first: dict[str, int] = {}
    for planned in sim.planned():
        for dev in planned.devices:
            first.setdefault(dev, planned.index)
    return first


class ChurnSim(Sim):
    """The simulator with selection's part played too: decommissioned robots are not planned."""

    def planned(self) -> list[PlannedWave]:
        strategy = effective_strategy(self.rollout, None)
        eligible = sorted(d for d, model in self.devices.items() if not model.decommissioned)
        return plan_waves(self.rollout.name, strategy, eligible, {}, {})


class Walk:
    """One random rollout: robots and the operator act at random between ticks."""

    def __init__(
        self, seed: int, *, windows: bool = False, failures: bool = True, churn: bool = False
    ) -> None:
        self.rng = rng = random.Random(seed)
        ids = robots(rng.randint(3, 12))
        fields: dict[str, Any] = {"on_halt": rng.choice([p.value for p in HaltPolicy])}
        if rng.random() < 0.5:
            fields["download_rate_per_minute"] = rng.randint(1, 4)
        devices = None
        if windows:
            devices = [
                device(
                    dev,
                    timezone=rng.choice(["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]),
                    windows=[{"start": f"{h:02d}:00", "end": f"{(h + rng.randint(1, 4)) % 24:02d}:30"}]
                    if rng.random() < 0.8
                    else [],
                )
                for dev in ids
                for h in [rng.randrange(24)]
            ]
        if churn and rng.random() < 0.3:
            fields["schedule"] = {"not_before": (T0 + timedelta(minutes=rng.randint(1, 90))).isoformat()}
        doc = rollout_doc(ids, _strategy(rng, manual=churn), **fields)
        self.sim = ChurnSim(doc, devices) if churn else Sim(doc, devices)
        self.churn = churn
        self.joined = 0
        self.failures = failures
        self.failure_rate = rng.choice([0.02, 0.1, 0.3])  # per report: failed or rolled back by the agent
        self.switched: set[str] = set()  # robots that ran the new release and did not restore the old
        self.aborted_at: datetime | None = None
        self.scope_at_halt: set[str] | None = None
        self.prior: dict[str, DeploymentRecord] = {}

    # --- between ticks ----------------------------------------------------------------------------

    def robots_act(self) -> None:
        sim, rng = self.sim, self.rng
        if sim.state is None:
            return
        for dev in sorted(sim.devices):
            if sim.devices[dev].decommissioned:
                continue  # gone: it reports nothing any more
            record = sim.record(dev)
            if (
                record is not None
                and record.action is not Action.ROLLBACK
                and record.activity.value == "queued"
            ):
                self._act_on_deployment(dev, record)
            back = sim.rollback(dev)
            waiting = back is not None and back.action is Action.ROLLBACK and back.activity.value == "queued"
            if waiting and rng.random() < 0.6:
                sim.report(dev, "downloading", "applying", "watching", "deployed", rollback=True)
                self.switched.discard(dev)

    def _act_on_deployment(self, dev: str, record: DeploymentRecord) -> None:
        if record.target_status.value != "deployed":
            return  # archived (aborted, superseded) or staged
        roll = self.rng.random()
        if roll < 0.15:
            return  # silent this time (may time out later)
        if not self.failures or roll < 1 - self.failure_rate:
            self.sim.succeed(dev)
            self.switched.add(dev)
        elif roll < 1 - self.failure_rate / 2:
            self.sim.fail(dev)  # downloading, applying, failed: it began applying
            self.switched.add(dev)
        else:
            self.sim.report(dev, "downloading", "applying", "watching", "rolled_back")

    def operator_acts(self) -> None:
        sim, rng = self.sim, self.rng
        if sim.state is None or self.aborted_at is not None:
            return
        roll = rng.random()
        if roll < 0.08:
            sim.edit(paused=not sim.rollout.paused)
        elif roll < 0.09 and self.failures:
            sim.edit(aborted=True)
            self.aborted_at = sim.now

    def fleet_changes(self) -> None:
        """Cohort edits and retirements on main, and promotions: none of them a new generation."""
        sim, rng = self.sim, self.rng
        roll = rng.random()
        if roll < 0.06:
            self.joined += 1
            new = f"zz-{self.joined:02d}"
            sim.devices[new] = device(new)
        elif roll < 0.14 and len(sim.devices) > 1:
            del sim.devices[rng.choice(sorted(sim.devices))]  # left the targeted cohorts
        elif roll < 0.2:
            dev = rng.choice(sorted(sim.devices))
            sim.devices[dev] = sim.devices[dev].model_copy(update={"decommissioned": True})
            self.switched.discard(dev)
        elif roll < 0.35:
            sim.edit(promote=sim.rollout.promote + 1)
        elif roll < 0.40:
            sim.withdrawn |= {SHA_NEW}  # a withdrawal on main names the rollout's release
        elif roll < 0.45:
            sim.withdrawn |= {SHA_OLD}  # ... or the one a halt would roll back to

    # --- the tick and its checks ------------------------------------------------------------------

    def step(self) -> None:
        self.robots_act()
        self.operator_acts()
        self.sim.now += timedelta(seconds=self.rng.choice([5, 30, 61, 300, 700, 1000]))
        sim = self.sim
        before = {dev: {r.id for r in f.records} for dev, f in sim.files.items()}
        self.prior = {r.id: r for f in sim.files.values() for r in f.records}  # as the tick read them
        before_state = sim.state
        inp = sim.input()
        out = advance(inp)
        assert advance(_shuffled(inp, self.rng)) == out, "the input order changed the decision"
        sim.apply(out)
        again = advance(sim.input())
        assert (again.records, again.events, again.state) == ({}, (), out.state), "a replay decided more"
        created = [
            r for dev, records in out.records.items() for r in records if r.id not in before.get(dev, set())
        ]
        self.check_dispatch(inp, before_state, out.state, created)
        self.check_gates(out.state)
        self.check_holds(inp, out.state)
        self.check_rollbacks(out.state, created)
        if self.churn:
            self.check_churn(inp, before_state, out.state, created)
            self.fleet_changes()  # right after a tick: robots leave with fresh orders open

    def check_churn(
        self,
        inp: EngineInput,
        before: RolloutState | None,
        state: RolloutState,
        created: list[DeploymentRecord],
    ) -> None:
        sim = self.sim
        if SHA_NEW in inp.withdrawn:
            assert all(r.action is Action.ROLLBACK for r in created), "a withdrawn release dispatched"
        if SHA_OLD in inp.withdrawn:
            assert all(r.action is not Action.ROLLBACK for r in created), "rolled back to a withdrawn release"
        not_before = inp.rollout.schedule.not_before
        if not_before is not None and inp.now < not_before:
            assert not created, "dispatched before not_before"
        retired = {d for d, model in sim.devices.items() if model.decommissioned}
        assert not {r.device for r in created} & retired, "a new order for a decommissioned robot"
        members = {d for p in sim.planned() for d in p.devices}
        for dev, file in sim.files.items():
            for record in file.records:
                if record.generation != state.generation or is_terminal(record):
                    continue
                assert dev not in retired, f"{dev} is decommissioned but still has an open record"
                if record.action is not Action.ROLLBACK and not lifecycle_frozen(inp):
                    assert dev in members, f"{dev} left the rollout but its deployment stays open"
        if before is not None and before.generation == state.generation:
            newly_passed = [
                w
                for w, old in zip(state.waves, before.waves, strict=False)
                if w.index == old.index and w.phase is WavePhase.PASSED and old.phase is not WavePhase.PASSED
            ]
            manual = [w for w in newly_passed if w.gate is not None and w.gate.manual_promotion]
            assert state.promote_seen - before.promote_seen == len(manual), "one promotion per manual wave"
            assert state.promote_seen <= sim.rollout.promote

    def check_dispatch(
        self,
        inp: EngineInput,
        before: RolloutState | None,
        state: RolloutState,
        created: list[DeploymentRecord],
    ) -> None:
        sim, now = self.sim, inp.now
        fresh = [r for r in created if r.action is Action.DEPLOY]
        first = _first_wave(sim)
        waves = {w.index: w for w in state.waves}
        if fresh:
            assert not inp.rollout.paused and not inp.rollout.aborted, "dispatch while paused or aborted"
            assert state.phase in (RolloutPhase.PROGRESSING, RolloutPhase.COMPLETED), state.phase
            assert before is None or before.phase is not RolloutPhase.HALTED
        for record in fresh:
            assert record.wave == first[record.device], "dispatched outside its own wave"
            assert record.device not in state.rolled_back_devices
            for index in range(record.wave):
                earlier = waves[index]
                assert earlier.phase is WavePhase.PASSED, f"wave {index} had not passed"
                assert earlier.gate is not None and earlier.gates_met_at is not None
                assert earlier.finished_at is not None and earlier.finished_at <= now
                soak = 0 if not earlier.devices else earlier.gate.soak_seconds
                assert earlier.finished_at >= earlier.gates_met_at + timedelta(seconds=soak), "soak cut short"
        rate = inp.rollout.download_rate_per_minute
        if rate is not None:
            recent = [
                r
                for f in sim.files.values()
                for r in f.records
                if r.action is Action.DEPLOY
                and r.generation == state.generation
                and now - timedelta(seconds=60) < r.created_at <= now
            ]
            assert len(recent) <= rate, f"{len(recent)} downloads in a minute, limit {rate}"
        if self.aborted_at is not None and inp.now > self.aborted_at:
            assert not fresh

    def check_holds(self, inp: EngineInput, state: RolloutState) -> None:
        """No robot waits without a reason: a running wave has dispatched every due robot, and a
        waiting one names holds that are true now."""
        sim = self.sim
        holds = Holds(state)  # every robot still waiting for its deployment has one reason
        for wave in state.waves:
            for dev in wave.devices:
                if sim.record(dev) is None and dev not in state.rolled_back_devices:
                    why = holds.of(wave.index, dev)
                    assert why is not None, f"{dev} waits without a reason"
                    model = sim.devices.get(dev)
                    if why is HoldReason.MAINTENANCE_WINDOW and model is not None:
                        assert not window_open(model.maintenance_windows, inp.now, model.timezone), dev
        if state.phase is not RolloutPhase.PROGRESSING:
            return
        position = next((i for i, w in enumerate(state.waves) if w.phase is not WavePhase.PASSED), None)
        if position is None:
            return
        wave = state.waves[position]
        # The active wave's own robots: a catch-up robot of a passed wave (a late joiner, or a
        # blue/green robot still to stage while the switch runs) has its hold noted on its own wave.
        earlier = {d for w in state.waves[:position] for d in w.devices}
        waiting = [
            d
            for d in wave.devices
            if d not in earlier and sim.record(d) is None and d not in state.rolled_back_devices
        ]
        if wave.phase is WavePhase.RUNNING:
            assert not waiting, f"{waiting} wait in a running wave without a hold reason"
        if wave.phase is not WavePhase.WAITING or wave.reason is None:
            return
        reasons = set(wave.reason.split(","))
        assert waiting, f"wave {wave.name} waits ({wave.reason}) with every robot dispatched"
        if "maintenance_window" in reasons:
            outside = [
                d
                for d in waiting
                if not window_open(sim.devices[d].maintenance_windows, inp.now, sim.devices[d].timezone)
            ]
            assert outside, "held for a window while every waiting robot is inside one"
        if "rate_limit" in reasons:
            rate = inp.rollout.download_rate_per_minute
            minute = inp.now - timedelta(seconds=60)
            recent = [
                r
                for f in sim.files.values()
                for r in f.records
                if r.action is not Action.ROLLBACK
                and r.generation == state.generation
                and r.created_at > minute
            ]
            assert rate is not None and len(recent) >= rate, "held for the rate limit below the limit"

    def check_gates(self, state: RolloutState) -> None:
        failed = [w for w in state.waves if w.phase is WavePhase.FAILED]
        assert len(failed) <= 1
        for wave in state.waves:
            if wave.phase is WavePhase.FAILED:
                assert wave.decided_counts is not None and _crossed(wave, wave.decided_counts)
            if wave.phase is WavePhase.PASSED:
                decided = wave.decided_counts
                assert decided is not None and not _crossed(wave, decided), "passed over a crossed threshold"
                assert wave.gate is not None
                assert decided.reported * 100.0 >= wave.gate.min_reported_percent * decided.total
        if failed:
            later = [w for w in state.waves if w.index > failed[0].index]
            assert all(w.started_at is None for w in later), "a wave after the failed one started"
            assert state.phase in (RolloutPhase.HALTED, RolloutPhase.ROLLING_BACK, RolloutPhase.ABORTED)
        if state.phase in (RolloutPhase.PROGRESSING, RolloutPhase.PAUSED):
            active = next((w for w in state.waves if w.phase is not WavePhase.PASSED), None)
            if active is not None and active.started_at is not None:
                assert not _crossed(active, active.counts), "threshold crossed but the rollout goes on"

    def check_rollbacks(self, state: RolloutState, created: list[DeploymentRecord]) -> None:
        backs = [r for r in created if r.action is Action.ROLLBACK]
        failed = next((w for w in state.waves if w.phase is WavePhase.FAILED), None)
        policy = HaltPolicy(self.sim.rollout.on_halt)
        if backs:
            assert failed is not None and policy is not HaltPolicy.PAUSE
        for record in backs:
            assert (record.version, record.release_sha256) == ("1.0.0", SHA_OLD)
            assert failed is not None
            in_scope = (
                record.wave <= failed.index
                if policy is HaltPolicy.ROLLBACK_ALL
                else record.wave == failed.index
            )
            assert in_scope, (
                f"{record.device} of wave {record.wave} rolled back after wave {failed.index} failed"
            )
        if failed is None:
            return
        scope = {
            d
            for w in state.waves
            if (w.index <= failed.index if policy is HaltPolicy.ROLLBACK_ALL else w.index == failed.index)
            for d in w.devices
        }
        if self.scope_at_halt is None:
            self.scope_at_halt = scope
        # Robots that were in the rolled-back waves when the wave failed and still are: a cohort
        # edit after the halt moves membership, not what ran where.
        scope &= self.scope_at_halt
        if (
            state.phase is RolloutPhase.HALTED
            and policy is not HaltPolicy.PAUSE
            and SHA_OLD not in self.sim.withdrawn
        ):
            for dev in sorted(self.switched & scope):
                back = self.sim.rollback(dev)
                assert back is not None and back.action is Action.ROLLBACK, (
                    f"{dev} ran the release, no rollback"
                )


class BlueGreenWalk(Walk):
    """Blue/green: robots stage into the inactive slot, then switch when the controller says so."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        strategy = {
            "type": "blue_green",
            "min_staged_percent": self.rng.choice([50, 80, 100]),
            "failure_threshold": _threshold(self.rng),
        }
        self.sim.edit(strategy=strategy)
        self.switch_ordered: set[str] = set()

    def _act_on_deployment(self, dev: str, record: DeploymentRecord) -> None:
        if record.action is not Action.STAGE or record.target_status.value != "staged":
            return
        roll = self.rng.random()
        if roll < 0.15:
            return
        if roll < 1 - self.failure_rate:
            self.sim.report(dev, "downloading", "staged")
        else:
            self.sim.report(dev, "downloading", "failed", error="failed")

    def robots_act(self) -> None:
        super().robots_act()
        sim = self.sim
        if sim.state is None:
            return
        for dev in sorted(sim.devices):
            record = sim.record(dev)
            if record is None or record.action is not Action.STAGE or dev not in self.switch_ordered:
                continue
            if (record.activity.value, record.target_status.value) != ("staged", "deployed"):
                continue
            roll = self.rng.random()
            if roll < 0.15:
                continue
            if roll < 1 - self.failure_rate:
                sim.report(dev, "applying", "watching", "deployed")
            else:
                sim.report(dev, "applying", "failed", error="failed")
            self.switched.add(dev)

    def step(self) -> None:
        sim = self.sim
        super().step()
        prior = self.prior
        state = sim.rollout_state
        for file in sim.files.values():
            for record in file.records:
                old = prior.get(record.id)
                if record.action is not Action.STAGE or record.target_status.value != "deployed":
                    continue
                if old is not None and old.target_status.value == "deployed":
                    continue
                # The switch was ordered on this tick.
                assert old is not None and old.activity.value == "staged", "switched before it staged"
                assert state.waves[0].phase is WavePhase.PASSED, "switched before the stage wave passed"
                assert not sim.rollout.paused and not sim.rollout.aborted
                self.switch_ordered.add(record.device)
        backs = set(sim.rollbacks())
        assert backs <= self.switch_ordered, "a robot that only staged was rolled back"


@pytest.mark.parametrize("seed", range(30))
def test_blue_green_switches_only_staged_robots_after_the_stage_gate(seed: int) -> None:
    walk = BlueGreenWalk(2000 + seed)
    for _ in range(TICKS):
        walk.step()


def lifecycle_frozen(inp: EngineInput) -> bool:
    return inp.rollout.paused or inp.rollout.aborted


def _shuffled(inp: EngineInput, rng: random.Random) -> EngineInput:
    def shuffle(mapping: Any) -> dict[Any, Any]:
        items = list(mapping.items())
        rng.shuffle(items)
        return dict(items)

    files = {
        dev: f.model_copy(update={"records": tuple(rng.sample(f.records, len(f.records)))})
        for dev, f in shuffle(inp.device_files).items()
    }
    return dataclasses.replace(inp, device_files=files, devices=shuffle(inp.devices))


@pytest.mark.parametrize("seed", SEEDS)
def test_random_rollouts_keep_the_wave_rules_on_every_tick(seed: int) -> None:
    walk = Walk(seed)
    for _ in range(TICKS):
        walk.step()


@pytest.mark.parametrize("seed", range(30))
def test_cohort_edits_retirements_and_promotions_keep_the_rules(seed: int) -> None:
    walk = Walk(1000 + seed, churn=True)
    for _ in range(TICKS):
        walk.step()


@pytest.mark.parametrize("seed", range(8))
def test_without_failures_every_robot_ends_deployed_and_the_rollout_completes(seed: int) -> None:
    walk = Walk(seed, failures=False)
    walk.sim.edit(paused=False)
    for _ in range(120):
        walk.step()
        if walk.sim.phase() is RolloutPhase.COMPLETED:
            break
    if walk.sim.rollout.paused:
        walk.sim.edit(paused=False)
        for _ in range(60):
            walk.step()
    assert walk.sim.phase() is RolloutPhase.COMPLETED
    state = walk.sim.rollout_state
    assert all(w.phase is WavePhase.PASSED for w in state.waves)
    for dev in walk.sim.devices:
        record = walk.sim.record(dev)
        assert record is not None and record.activity.value == "deployed", dev
    assert state.rolled_back_devices == ()


@pytest.mark.parametrize("seed", range(8))
def test_robots_are_dispatched_only_inside_their_maintenance_windows(seed: int) -> None:
    walk = Walk(seed, windows=True)
    sim = walk.sim
    for _ in range(TICKS):
        known = {dev: {r.id for r in f.records} for dev, f in sim.files.items()}
        walk.step()
        for dev, file in sim.files.items():
            for record in file.records:
                if record.id in known.get(dev, set()) or record.action is not Action.DEPLOY:
                    continue
                model = sim.devices[dev]
                if model.maintenance_windows:
                    assert window_open(model.maintenance_windows, record.created_at, model.timezone), dev


def test_the_rate_limit_is_reached_by_some_walk() -> None:
    # Guard for the property above: the seeds must actually exercise the limit, not pass vacuously.
    hit = False
    for seed in SEEDS:
        walk = Walk(seed)
        if walk.sim.rollout.download_rate_per_minute is None:
            continue
        walk.step()
        state = walk.sim.rollout_state
        hit = hit or any(w.reason and "rate_limit" in w.reason for w in state.waves)
    assert hit


def test_the_walks_reach_halts_rollbacks_completions_and_pauses() -> None:
    # The same guard for the other rules: each outcome is reached by at least one seed.
    phases: set[RolloutPhase] = set()
    rolled_back = False
    for seed in SEEDS:
        walk = Walk(seed)
        for _ in range(TICKS):
            walk.step()
            phases.add(walk.sim.phase())
            rolled_back = rolled_back or bool(walk.sim.rollbacks())
    assert {RolloutPhase.HALTED, RolloutPhase.COMPLETED, RolloutPhase.PAUSED, RolloutPhase.ABORTED} <= phases
    assert rolled_back


def test_an_abort_during_a_rollback_takes_effect_the_tick_the_rollback_finishes() -> None:
    # Found by seed 2: the rollback finished (halted) and the very same input, fed back, then
    # aborted it, so a replayed reconcile logged rollout_aborted that the first one had not.
    sim = Sim(rollout_doc(robots(4), {"type": "canary", "percent": 25}))
    sim.tick()
    (canary,) = sim.wave("canary").devices
    sim.fail(canary)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ROLLING_BACK and sim.rollbacks() == [canary]
    sim.edit(aborted=True)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ROLLING_BACK, "the rollback is finished first"
    sim.report(canary, "downloading", "applying", "watching", "deployed", rollback=True)
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.ABORTED
    assert sim.kinds().count(AuditKind.ROLLOUT_ABORTED) == 1
    again = advance(sim.input())
    assert (again.records, again.events, again.state) == ({}, (), sim.state)
