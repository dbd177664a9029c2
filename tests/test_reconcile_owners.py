"""The deployment owners kept between reconciles (:mod:`controller.reconcile.owners`) answer what the
cold map over every robot's records answers.

Seeded random lives of a fleet's device files (records added, replaced and dropped, robots joining
and leaving, equal copies, files reordered, forged copies of other robots' records) are looked up
after every change through one kept :class:`OwnersMemo`, for every id the files hold and for ids
none holds, and compared with ``{id: robot for robot, file in map for id in file}``: the same
owner for every id, including those several robots' files hold. A patch cut short by an error
starts again from nothing, and a robot that left never comes back from the memo.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from datetime import timedelta

import pytest

from controller.reconcile.owners import Owners, OwnersMemo
from controller.records import DeploymentRecord, DeviceState, new_deployment
from controller.records.model import Action, TargetStatus
from controller.state.model import DeviceFile
from tests.sim.engine import SHA_NEW, SHA_OLD, T0

SEEDS = range(25)
STEPS = 40


def record(device: str, generation: int, sha: str) -> DeploymentRecord:
    return new_deployment(
        rollout="r", generation=generation, device=device, app="navstack", version="1.1.0",
        release_sha256=sha, wave=0, action=Action.DEPLOY, target_status=TargetStatus.DEPLOYED,
        at=T0, deadline_at=T0 + timedelta(hours=1),
    )  # fmt: skip


def file_of(device: str, records: tuple[DeploymentRecord, ...] = ()) -> DeviceFile:
    return DeviceFile(state=DeviceState(device=device), records=records)


def cold(devices: Mapping[str, DeviceFile]) -> dict[str, str]:
    return {r.id: d for d, f in devices.items() for r in f.records}


def asked(devices: Mapping[str, DeviceFile], rng: random.Random) -> list[str]:
    """Every id the files hold, some twice, and ids no file holds, in a random order."""
    ids = [r.id for f in devices.values() for r in f.records]
    ids += [f"dep-{rng.getrandbits(96):024x}" for _ in range(3)]
    rng.shuffle(ids)
    return ids


def change(devices: dict[str, DeviceFile], rng: random.Random, joined: list[int]) -> dict[str, DeviceFile]:
    """One random change of the map, a new dict as the ingest step starts from each time."""
    out = dict(devices)
    names = sorted(out)
    roll = rng.random()
    dev = rng.choice(names) if names else None
    if roll < 0.25 and dev is not None:  # a new deployment, or one more generation
        old = out[dev]
        new = record(dev, rng.randint(1, 4), rng.choice((SHA_NEW, SHA_OLD)))
        out[dev] = old.model_copy(update={"records": (*old.records, new)})
    elif roll < 0.35 and dev is not None:  # records dropped (the file trimmed)
        old = out[dev]
        out[dev] = old.model_copy(update={"records": old.records[1:]})
    elif roll < 0.45:  # a robot joins
        joined[0] += 1
        new_dev = f"amr-{joined[0]:03d}"
        out[new_dev] = file_of(new_dev, (record(new_dev, 1, SHA_NEW),))
    elif roll < 0.55 and dev is not None:  # a robot leaves
        del out[dev]
    elif roll < 0.65 and dev is not None:  # an equal copy: another object
        out[dev] = out[dev].model_copy()
    elif roll < 0.8 and dev is not None and len(names) > 1:  # mallory copies another's records
        other = rng.choice([n for n in names if n != dev])
        old = out[dev]
        out[dev] = old.model_copy(update={"records": (*old.records, *out[other].records[:2])})
    elif roll < 0.9:  # the same files in another order
        items = list(out.items())
        rng.shuffle(items)
        out = dict(items)
    elif dev is not None:  # a robot's file holds one record twice
        old = out[dev]
        if old.records:
            out[dev] = old.model_copy(update={"records": (*old.records, old.records[0])})
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_kept_owners_answer_what_the_cold_map_answers_through_a_random_life(seed: int) -> None:
    rng = random.Random(seed)
    devices = {
        f"amr-{i:03d}": file_of(f"amr-{i:03d}", (record(f"amr-{i:03d}", 1, SHA_NEW),)) for i in range(8)
    }
    joined = [100]
    memo = OwnersMemo()
    shared_seen = 0
    for step in range(STEPS):
        devices = change(devices, rng, joined)
        if step % 10 == 9:  # a process started afresh (or a patch cut short): built from every file
            memo.ready = False
        owners, expected = Owners(dict(devices), memo), cold(devices)
        for record_id in asked(devices, rng):
            assert owners.get(record_id) == expected.get(record_id), record_id
        shared_seen += bool(memo.shared)
        assert not memo.owner.keys() & memo.shared.keys()  # an id has one owner or several holders
        assert set(memo.owner.values()) <= set(devices)  # a robot that left owns nothing
        assert all(held <= set(devices) for held in memo.shared.values())
    assert memo.rebuilt == 1 + STEPS // 10  # at first and when asked to, patched in between
    if seed == 0:
        assert shared_seen  # the forged copies made ids several robots hold


def test_some_random_lives_hold_ids_several_robots_hold() -> None:
    hits = 0
    for seed in range(40):
        rng = random.Random(seed)
        devices = {
            f"amr-{i:03d}": file_of(f"amr-{i:03d}", (record(f"amr-{i:03d}", 1, SHA_NEW),)) for i in range(5)
        }
        memo = OwnersMemo()
        for _ in range(STEPS):
            devices = change(devices, rng, [100])
            Owners(dict(devices), memo).get("dep-" + "0" * 24)
            hits += bool(memo.shared)
    assert hits >= 10


def test_attack_a_copy_of_another_robots_record_is_answered_as_the_cold_map_answers() -> None:
    """Mallory's file holds the victim's record: the id is held twice. The cold map answers the
    robot last in the map's order; the kept one answers the same, and the victim again once the
    copy is gone."""
    victim, mallory = "amr-001", "amr-002"
    theirs = record(victim, 1, SHA_NEW)
    devices = {victim: file_of(victim, (theirs,)), mallory: file_of(mallory)}
    memo = OwnersMemo()
    assert Owners(dict(devices), memo).get(theirs.id) == victim
    devices[mallory] = file_of(mallory, (theirs,))
    assert Owners(dict(devices), memo).get(theirs.id) == cold(devices)[theirs.id] == mallory
    flipped = {mallory: devices[mallory], victim: devices[victim]}
    assert Owners(dict(flipped), memo).get(theirs.id) == cold(flipped)[theirs.id] == victim
    devices[mallory] = file_of(mallory)
    assert Owners(dict(devices), memo).get(theirs.id) == victim
    assert not memo.shared


def test_a_robot_that_left_is_no_owner_any_more() -> None:
    devices = {d: file_of(d, (record(d, 1, SHA_NEW),)) for d in ("amr-001", "amr-002")}
    gone = devices["amr-002"].records[0].id
    memo = OwnersMemo()
    assert Owners(dict(devices), memo).get(gone) == "amr-002"
    del devices["amr-002"]
    assert Owners(dict(devices), memo).get(gone) is None
    assert gone not in memo.owner and not memo.shared


class Failing(Mapping[str, DeviceFile]):
    """A devices map whose lookups of one robot fail: a patch cut short half way."""

    def __init__(self, files: dict[str, DeviceFile], bad: str) -> None:
        self.files, self.bad = files, bad

    def __getitem__(self, key: str) -> DeviceFile:
        if key == self.bad:
            raise RuntimeError("cut short")
        return self.files[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


def test_a_patch_cut_short_starts_again_from_nothing() -> None:
    devices = {
        f"amr-{i:03d}": file_of(f"amr-{i:03d}", (record(f"amr-{i:03d}", 1, SHA_NEW),)) for i in range(6)
    }
    memo = OwnersMemo()
    Owners(dict(devices), memo).get("x")
    changed = dict(devices)
    for dev in ("amr-001", "amr-004"):
        changed[dev] = file_of(dev, (record(dev, 2, SHA_OLD),))
    with pytest.raises(RuntimeError):
        Owners(Failing(changed, "amr-004"), memo).get("x")
    assert not memo.ready
    owners = Owners(dict(changed), memo)
    for record_id, owner in cold(changed).items():
        assert owners.get(record_id) == owner
    assert memo.rebuilt == 2
    stale = devices["amr-004"].records[0].id
    assert owners.get(stale) is None


def test_no_lookup_reads_nothing() -> None:
    devices = {"amr-001": file_of("amr-001", (record("amr-001", 1, SHA_NEW),))}
    memo = OwnersMemo()
    owners = Owners(dict(devices), memo)
    assert owners  # ``owners or {}`` keeps it without reading a robot
    assert memo.rebuilt == 0 and not memo.owner and owners._cold is None
    cold_owners = Owners(dict(devices))
    assert dict(cold_owners) == cold(devices) and len(cold_owners) == 1
