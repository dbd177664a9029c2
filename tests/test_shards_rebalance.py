"""What the status-shard rule promises when an operator changes the shard list (fleetcd/shards.py).

Every robot in the field has its shard written into its agent.yaml; a robot whose shard changes
must be re-provisioned, and until then the controller refuses its reports. So the rendezvous rule
is only worth having for these properties, checked here over seeded fleets: adding a shard moves
about 1/N of the robots and only onto the new shard; removing a shard moves only the robots it held;
the order, duplicates and URLs of the list change nothing; and growing one shard at a time never
moves a robot back to a shard it left.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from fleetcd.shards import ShardSpec, check_shards, shard_of

FLEET = [f"amr-{n:05d}" for n in range(3000)]
BASE = ["eu-1", "eu-2", "us-1", "ap-1"]


def assignment(names: list[str], fleet: list[str] = FLEET) -> dict[str, str]:
    return {device: shard_of(device, names) for device in fleet}


BEFORE = assignment(BASE)


@pytest.mark.parametrize("new", ["us-2", "sa-1", "eu-3"])
def test_adding_a_shard_moves_about_a_fifth_and_only_onto_the_new_shard(new: str) -> None:
    after = assignment([*BASE, new])
    moved = {d for d in FLEET if after[d] != BEFORE[d]}
    assert {after[d] for d in moved} == {new}
    assert moved == {d for d in FLEET if after[d] == new}
    expected = len(FLEET) / (len(BASE) + 1)  # 600
    assert 0.8 * expected <= len(moved) <= 1.2 * expected, len(moved)


@pytest.mark.parametrize("gone", BASE)
def test_removing_a_shard_moves_only_the_robots_it_held_and_spreads_them(gone: str) -> None:
    after = assignment([n for n in BASE if n != gone])
    held = {d for d in FLEET if BEFORE[d] == gone}
    assert {d for d in FLEET if after[d] != BEFORE[d]} == held
    spread = Counter(after[d] for d in held)
    assert set(spread) == set(BASE) - {gone}, spread
    assert all(count >= len(held) / 6 for count in spread.values()), spread


def test_removing_a_shard_then_adding_it_back_restores_every_robot() -> None:
    assert assignment(BASE[1:] + BASE[:1]) == BEFORE
    shrunk = assignment(BASE[1:])
    assert shrunk != BEFORE
    assert assignment([*BASE[1:], BASE[0]]) == BEFORE


@pytest.mark.parametrize("order", list(itertools.permutations(BASE))[::5], ids=lambda o: ",".join(o))
def test_the_order_of_the_shard_list_changes_no_robot(order: tuple[str, ...]) -> None:
    sample = FLEET[::10]
    assert assignment(list(order), sample) == {d: BEFORE[d] for d in sample}


def test_a_name_listed_twice_changes_no_robot() -> None:
    sample = FLEET[::10]
    assert assignment([*BASE, BASE[2], BASE[0]], sample) == {d: BEFORE[d] for d in sample}


def test_moving_a_shard_to_another_url_keeps_its_robots() -> None:
    """Only names enter the rule: an operator migrating a server keeps every robot's shard."""
    old = check_shards(ShardSpec(n, f"ssh://git@{n}.old.example/fleet") for n in BASE)
    new = check_shards(ShardSpec(n, f"https://{n}.new.example/fleet.git") for n in reversed(BASE))
    sample = FLEET[::7]
    assert assignment([s.name for s in old], sample) == assignment([s.name for s in new], sample)


@pytest.mark.parametrize("seed", range(6))
def test_growing_one_shard_at_a_time_never_sends_a_robot_back(seed: int) -> None:
    """From 1 to 10 shards in a seeded order, each robot only ever moves to the shard just added."""
    rng = random.Random(seed)
    names = [f"s{n}" for n in range(10)]
    rng.shuffle(names)
    sample = rng.sample(FLEET, 400)
    current = assignment(names[:1], sample)
    moves = Counter[int]()
    for size in range(2, len(names) + 1):
        nxt = assignment(names[:size], sample)
        for device in sample:
            if nxt[device] != current[device]:
                assert nxt[device] == names[size - 1], (device, current[device], nxt[device])
                moves[size] += 1
        current = nxt
    # About 1/size of the robots move at each step (400/size), never most of the fleet.
    assert all(moves[size] < 2 * len(sample) / size for size in range(2, len(names) + 1)), moves


@pytest.mark.parametrize("seed", range(3))
def test_the_rule_is_the_highest_weight_over_each_single_shard_pair(seed: int) -> None:
    """Rendezvous is consistent pairwise: a robot's shard among N also wins every pair it is in."""
    rng = random.Random(100 + seed)
    names = rng.sample([f"z{n}" for n in range(20)], 6)
    for device in rng.sample(FLEET, 50):
        winner = shard_of(device, names)
        assert all(shard_of(device, [winner, other]) == winner for other in names)
