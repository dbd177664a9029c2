"""A config change is a rollout: new generation, new deployments only where the merged config
changed, through the same waves and gates as a release (the pure engine, tick by tick)."""

from __future__ import annotations

from datetime import timedelta

from controller.audit.events import AuditKind
from controller.engine.inputs import DeviceConfig
from controller.records import TargetStatus
from controller.state.model import RolloutPhase, WavePhase
from fleetcd.desired.configset import merged_sha256
from tests.sim.engine import Sim, robots, rollout_doc

TWO_WAVES = {
    "type": "waves",
    "waves": [
        {"name": "first", "percent": 25, "soak_seconds": 60, "failure_threshold": {"count": 0}},
        {"name": "rest", "percent": 100, "soak_seconds": 60},
    ],
}


def _completed(sim: Sim) -> None:
    sim.tick()
    for _ in range(4):
        sim.succeed(*[d for d in sim.dispatched() if sim.record(d).activity.value == "queued"])  # type: ignore[union-attr]
        sim.tick(timedelta(minutes=2))
    assert sim.phase() is RolloutPhase.COMPLETED


def _configured_sim() -> Sim:
    ids = robots(8)
    sim = Sim(rollout_doc(ids, TWO_WAVES))
    sim.set_config({"max_speed_mps": 1.2})
    _completed(sim)
    return sim


def test_config_edit_starts_a_new_generation_that_rolls_out_in_waves() -> None:
    sim = _configured_sim()
    first_ids = {d: sim.record(d).id for d in sim.devices}  # type: ignore[union-attr]
    sim.set_config({"max_speed_mps": 0.9})
    sim.tick()
    assert sim.rollout_state.generation == 2
    assert AuditKind.ROLLOUT_CREATED in sim.kinds(sim.last.events)  # type: ignore[union-attr]
    first = sim.wave("first").devices
    assert sim.dispatched() == sorted(first), "the rest waits for the first wave's gate"
    for dev in first:
        assert sim.record(dev).id != first_ids[dev]  # type: ignore[union-attr]
    sim.succeed(*first)
    sim.tick(timedelta(minutes=2))
    sim.tick(timedelta(minutes=2))
    assert sim.wave("first").phase is WavePhase.PASSED
    assert sim.dispatched() == sorted(sim.devices)


def test_robots_whose_merged_config_did_not_change_are_not_redeployed() -> None:
    sim = _configured_sim()
    ids = sorted(sim.devices)
    unchanged, changed = ids[:4], ids[4:]
    before = {d: sim.record(d).id for d in ids}  # type: ignore[union-attr]
    sim.set_config({"max_speed_mps": 0.9}, *changed)
    sim.tick()
    for dev in unchanged:
        carried = sim.files[dev].records[-1]
        assert carried.id == before[dev] and carried.target_status is TargetStatus.DEPLOYED
    assert not (set(sim.dispatched()) & set(unchanged))
    # The unchanged robots count as succeeded; the changed ones go through the waves.
    counts = {w.name: w.counts for w in sim.rollout_state.waves}
    assert sum(c.succeeded for c in counts.values()) == len(unchanged)
    for _ in range(4):
        sim.succeed(
            *[d for d in changed if sim.record(d) is not None and sim.record(d).activity.value == "queued"]
        )  # type: ignore[union-attr]
        sim.tick(timedelta(minutes=2))
    assert sim.phase() is RolloutPhase.COMPLETED


def test_a_failed_config_wave_halts_the_rollout_without_a_release_rollback() -> None:
    sim = _configured_sim()
    sim.set_config({"max_speed_mps": 0.9})
    sim.tick()
    first = sim.wave("first").devices
    sim.report(first[0], "downloading", "applying", "watching", "rolled_back", error="failed")
    sim.tick(timedelta(minutes=1))
    assert sim.wave("first").phase is WavePhase.FAILED
    sim.succeed(*first[1:])
    sim.tick(timedelta(minutes=1))
    assert sim.phase() is RolloutPhase.HALTED
    assert sim.rollbacks() == [], "robots only changed config: the agent restores it, not 1.0.0"
    assert not (set(sim.dispatched()) - set(first)), "no robot beyond the failed wave gets the config"


def test_replaying_the_same_config_commit_creates_nothing_twice() -> None:
    sim = _configured_sim()
    sim.set_config({"max_speed_mps": 0.9})
    sim.tick()
    again = sim.tick()
    assert again.records == {} and again.events == ()
    assert sim.rollout_state.generation == 2


def test_a_robot_whose_layers_change_within_a_generation_gets_a_new_deployment() -> None:
    """A robot joining a cohort with its own config file: same config set, same generation, but its
    merged config changed, so it gets a new deployment (the old one stays as it ended)."""
    sim = _configured_sim()
    dev = sorted(sim.devices)[0]
    old = sim.record(dev)
    assert old is not None
    sim.configs[dev] = DeviceConfig(
        ("configs/navstack/cohort-slow.yaml",), merged_sha256({"max_speed_mps": 0.5})
    )
    sim.tick()
    assert sim.rollout_state.generation == 1
    new = sim.record(dev)
    assert new is not None and new.id != old.id and new.config_files == ("configs/navstack/cohort-slow.yaml",)
    assert [r.id for r in sim.files[dev].records] == [old.id, new.id]
    assert sim.files[dev].records[0].activity.value == "deployed"
    assert sim.tick().records == {}, "replayed: nothing twice"


def test_records_without_config_knowledge_are_left_alone() -> None:
    """Records written before records carried config (no commit) are not redeployed on upgrade."""
    sim = _configured_sim()
    dev = sorted(sim.devices)[0]
    legacy = sim.files[dev].records[-1].model_copy(update={"commit": None, "config_sha256": None})
    sim.files[dev] = sim.files[dev].model_copy(update={"records": (legacy,)})
    assert sim.tick().records == {}
