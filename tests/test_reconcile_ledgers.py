"""The plan step's kept ledgers (:class:`~controller.reconcile.rollouts.KeptLedgers`): one pass over
the starting device map per plan step names the changed robots for every rollout; each rollout adds
the robots the rollouts before it wrote, this step and the last.

Seeded random plan steps over three rollouts sharing one fleet's files: between steps robots'
files are replaced, dropped, added, copied equal, given forged copies of other robots' records,
and rollouts come and go; in a step each rollout puts random records, written into the map before
the next rollout runs, as the plan step does (a write may drop another rollout's record, as the
ledger's trim does when a file is full). After every rollout of every step, its kept ledger
equals one built from every file. A step cut short by an error leaves every ledger to be built
again.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from controller.engine.ledger import Ledger
from controller.reconcile.rollouts import KeptLedgers
from controller.records import DeploymentRecord, DeviceState, new_deployment
from controller.records.model import Action, TargetStatus
from controller.records.transitions import archive
from controller.state.model import DeviceFile
from fleetcd.reasons import RecordReason
from tests.sim.engine import SHA_NEW, SHA_OLD, T0
from tests.test_engine_ledger_kept import index_of

ROLLOUTS = ("alpha", "beta", "gamma")
STEPS = 30


def record(rollout: str, device: str, generation: int, sha: str) -> DeploymentRecord:
    return new_deployment(
        rollout=rollout, generation=generation, device=device, app="navstack", version="1.1.0",
        release_sha256=sha, wave=0, action=Action.DEPLOY, target_status=TargetStatus.DEPLOYED,
        at=T0, deadline_at=T0 + timedelta(hours=1),
    )  # fmt: skip


def meddle(files: dict[str, DeviceFile], rng: random.Random, joined: list[int]) -> dict[str, DeviceFile]:
    """The next plan step's starting map: a new dict, some robots' files changed by others."""
    out = dict(files)
    for _ in range(rng.randint(0, 4)):
        names = sorted(out)
        dev = rng.choice(names) if names else ""
        roll = rng.random() if len(names) > 2 else 0.3  # a robot joins while few are left
        if roll < 0.2:
            del out[dev]
        elif roll < 0.35:
            joined[0] += 1
            out[f"amr-{joined[0]:03d}"] = DeviceFile(state=DeviceState(device=f"amr-{joined[0]:03d}"))
        elif roll < 0.5:
            out[dev] = out[dev].model_copy()
        elif roll < 0.7 and out[dev].records:
            records = tuple(
                archive(r, T0, RecordReason.ABORTED) if r.target_status.value != "archived" else r
                for r in out[dev].records
            )
            out[dev] = out[dev].model_copy(update={"records": records})
        else:  # mallory's file gains copies of another robot's records
            other = out[rng.choice(names)]
            out[dev] = out[dev].model_copy(update={"records": (*out[dev].records, *other.records[:2])})
    return out


def step(
    kept: KeptLedgers,
    files: dict[str, DeviceFile],
    rollouts: list[str],
    rng: random.Random,
    *,
    fail: str = "",
) -> None:
    """One plan step over ``files`` (changed in place as the step writes): each rollout's kept
    ledger against a cold one, then random records put and written for the next rollout."""
    kept.start(files, rollouts)
    for name in sorted(rollouts):
        memo, changed = kept.take(name)
        generation = 2 if name == "gamma" and rng.random() < 0.1 else 1
        ledger = Ledger(files, name, generation, SHA_NEW, memo=memo, changed=changed)
        assert index_of(ledger) == index_of(Ledger(files, name, generation, SHA_NEW)), name
        if name == fail:
            raise RuntimeError("the rollout's tick raised")
        for dev in rng.sample(sorted(files), min(3, len(files))):
            ledger.put(record(name, dev, generation, rng.choice((SHA_NEW, SHA_OLD))))
        written = ledger.changes()
        ledger.settle()
        for dev, records in written.items():
            others = [r for r in records if r.rollout != name]
            if others and rng.random() < 0.5:  # trimmed: the write drops another rollout's record
                records = tuple(r for r in records if r is not others[0])
            files[dev] = files[dev].model_copy(update={"records": records})
        kept.wrote(written)
    kept.finish()


@pytest.mark.parametrize("seed", range(25))
def test_every_kept_ledger_equals_a_cold_one_through_random_plan_steps(seed: int) -> None:
    rng = random.Random(seed)
    files = {f"amr-{i:03d}": DeviceFile(state=DeviceState(device=f"amr-{i:03d}")) for i in range(12)}
    kept, joined = KeptLedgers(), [100]
    kept.most_changed = 1.0  # patched however many of the few robots changed
    rollouts = list(ROLLOUTS)
    builds = 0
    for _ in range(STEPS):
        files = meddle(files, rng, joined)
        if rng.random() < 0.1:  # a rollout leaves main, or comes back
            rollouts = rng.sample(ROLLOUTS, rng.randint(1, 3))
        before = {n: k.ledger.rebuilt for n, k in kept.ledgers.items()}
        fail = rng.choice(rollouts) if rng.random() < 0.08 else ""
        try:
            step(kept, files, rollouts, rng, fail=fail)
        except RuntimeError:
            assert not kept.complete
            continue
        builds += sum(k.ledger.rebuilt != before.get(n, -1) for n, k in kept.ledgers.items())
        assert set(kept.ledgers) == set(rollouts)
    assert builds < STEPS * len(ROLLOUTS) // 2  # most ledgers were patched, not built again


def test_a_rollout_sees_what_the_rollouts_before_it_wrote_this_step_and_the_last() -> None:
    """alpha writes amr-1's file in one step and not the next: beta's ledger must read amr-1 again
    both times, though the starting map holds the same object for it in the second step."""
    files = {d: DeviceFile(state=DeviceState(device=d)) for d in ("amr-1", "amr-2")}
    kept = KeptLedgers(most_changed=1.0)
    kept.start(dict(files), ["alpha", "beta"])  # the first step builds every ledger
    for name in ("alpha", "beta"):
        memo, changed = kept.take(name)
        assert changed is None
        Ledger(files, name, 1, SHA_NEW, memo=memo, changed=changed).settle()
    kept.finish()
    first = dict(files)
    kept.start(first, ["alpha", "beta"])
    kept.take("alpha")
    planted = record("beta", "amr-1", 1, SHA_NEW)  # alpha's write carries a beta record
    first["amr-1"] = first["amr-1"].model_copy(update={"records": (planted,)})
    kept.wrote(["amr-1"])
    memo, changed = kept.take("beta")
    assert "amr-1" in changed
    Ledger(first, "beta", 1, SHA_NEW, memo=memo, changed=changed).settle()
    kept.finish()
    second = dict(files)  # the write did not land: the starting map holds the old object again
    kept.start(second, ["alpha", "beta"])
    kept.take("alpha")
    memo, changed = kept.take("beta")
    assert changed == {"amr-1"}
    ledger = Ledger(second, "beta", 1, SHA_NEW, memo=memo, changed=changed)
    assert ledger.find("amr-1", SHA_NEW) is None
    assert index_of(ledger) == index_of(Ledger(second, "beta", 1, SHA_NEW))


def test_a_plan_step_cut_short_builds_every_ledger_again() -> None:
    files = {d: DeviceFile(state=DeviceState(device=d)) for d in ("amr-1", "amr-2")}
    kept = KeptLedgers()
    rng = random.Random(7)
    step(kept, files, ["alpha", "beta"], rng)
    with pytest.raises(RuntimeError):
        step(kept, files, ["alpha", "beta"], rng, fail="beta")
    kept.start(files, ["alpha", "beta"])
    assert kept.ledgers == {} and kept.changed is None  # every robot is new to it: built
    memo, changed = kept.take("alpha")
    assert changed is None and memo.kept is None


def test_most_robots_changed_build_every_ledger_without_a_set_of_them() -> None:
    """The reconcile after a fleet-wide write: every robot's file is a new object. No set of the
    changed robots is made; each ledger is built from every file, as a cold one is."""
    names = [f"amr-{i:03d}" for i in range(40)]
    files = {d: DeviceFile(state=DeviceState(device=d)) for d in names}
    kept = KeptLedgers()
    step(kept, files, ["alpha"], random.Random(1))
    again = {d: f.model_copy() for d, f in files.items()}  # the same robots, every file new
    kept.start(again, ["alpha"])
    assert kept.changed is None
    few = dict(again)
    for d in names[:10]:  # a quarter: patched
        few[d] = few[d].model_copy()
    kept.finish()
    kept.start(few, ["alpha"])
    assert kept.changed == set(names[:10])
    kept.finish()
    shuffled = dict(reversed(list(few.items())))  # another order, one robot gone, one new
    del shuffled[names[20]]
    shuffled["amr-new"] = DeviceFile(state=DeviceState(device="amr-new"))
    kept.start(shuffled, ["alpha"])
    assert kept.changed == {names[20], "amr-new"}


def test_robots_changed_between_the_sampled_ones_are_still_counted() -> None:
    """The first look is at every n-th robot; robots changed only between those are found by the
    pass over every robot: past the share, built; under it, each of them is named."""
    names = [f"amr-{i:04d}" for i in range(1000)]
    files = {d: DeviceFile(state=DeviceState(device=d)) for d in names}
    kept = KeptLedgers()
    kept.start(files, ["alpha"])
    kept.finish()
    between = [d for i, d in enumerate(names) if i % 3]  # 1000 // 256: every third robot is sampled
    most = {d: (f.model_copy() if d in between else f) for d, f in files.items()}
    kept.start(most, ["alpha"])
    assert kept.changed is None
    kept.finish()
    few = dict(most)
    for d in between[:100]:
        few[d] = few[d].model_copy()
    kept.start(few, ["alpha"])
    assert kept.changed == set(between[:100])
