"""The status-shard rule and its input checks (fleetcd/shards.py), pure.

Provisioning writes each robot's shard into its agent.yaml once; the controller computes the same
rule on every reconcile and refuses a report found anywhere else. So the rule must never change
between versions (a pinned table), must spread a fleet evenly, and every shard list an operator
types must be checked before anything is read.
"""

from __future__ import annotations

from collections import Counter

import pytest

from fleetcd.shards import (
    MAX_SHARDS,
    SHARD_NAME_MAX,
    ShardSpec,
    check_shard_name,
    check_shards,
    parse_shard,
    shard_of,
)

# Written into agent.yaml files of robots already in the field: a new rule would send every one of
# these reports to a shard the controller then refuses them from.
PINNED = {"amr-001": "ap-1", "amr-002": "eu-1", "amr-003": "ap-1", "tug-17": "us-1", "x": "ap-1"}


@pytest.mark.parametrize(("device", "shard"), PINNED.items(), ids=PINNED.keys())
def test_the_rule_is_the_one_robots_in_the_field_were_provisioned_with(device: str, shard: str) -> None:
    assert shard_of(device, ["eu-1", "us-1", "ap-1"]) == shard


def test_a_fleet_of_two_thousand_spreads_within_a_fifth_of_even_over_four_shards() -> None:
    counts = Counter(shard_of(f"amr-{n:05d}", ["a", "b", "c", "d"]) for n in range(2000))
    assert set(counts) == {"a", "b", "c", "d"}
    assert all(400 <= count <= 600 for count in counts.values()), counts


def test_one_shard_takes_every_robot() -> None:
    assert {shard_of(f"r{n}", ["only"]) for n in range(50)} == {"only"}


def test_no_shards_at_all_is_an_error_not_a_default() -> None:
    with pytest.raises(ValueError, match="no status shards"):
        shard_of("amr-001", [])


def test_a_shard_list_given_as_a_generator_gives_the_same_answer() -> None:
    names = ["eu-1", "us-1", "ap-1"]
    assert shard_of("amr-001", iter(names)) == shard_of("amr-001", names)


# --- names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a" * SHARD_NAME_MAX, "eu-1", "0", "a-b-c"],
    ids=["at-length-bound", "typical", "digit", "several-dashes"],
)
def test_a_well_formed_shard_name_is_accepted(name: str) -> None:
    assert check_shard_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["a" * (SHARD_NAME_MAX + 1), "", "EU-1", "eu_1", "eu--1", "-eu", "eu-", "eu/1", "../x", "eu 1", "é"],
    ids=[
        "one-over-bound", "empty", "upper-case", "underscore", "double-dash", "leading-dash",
        "trailing-dash", "slash", "traversal", "space", "non-ascii",
    ],
)  # fmt: skip
def test_a_shard_name_that_could_collide_or_escape_is_refused(name: str) -> None:
    # A '/' would let "a/b" + "c" hash like "a" + "b/c": names are plain words only.
    with pytest.raises(ValueError, match="shard name"):
        check_shard_name(name)


# --- NAME=URL ----------------------------------------------------------------------------------------


def test_the_url_keeps_everything_after_the_first_equals_sign() -> None:
    spec = parse_shard("eu-1=https://git.example.com/fleet?x=1")
    assert spec == ShardSpec("eu-1", "https://git.example.com/fleet?x=1")


@pytest.mark.parametrize(
    "text",
    ["eu-1", "eu-1=", "eu-1=   ", "=ssh://host/fleet"],
    ids=["no-equals", "no-url", "blank-url", "no-name"],
)
def test_a_shard_without_a_name_or_url_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_shard(text)


def test_a_url_over_two_kilobytes_is_refused_naming_the_shard() -> None:
    with pytest.raises(ValueError, match="eu-1") as caught:
        parse_shard("eu-1=ssh://host/" + "x" * 2048)
    assert "2048" in str(caught.value)


# --- the list ----------------------------------------------------------------------------------------


def test_shards_come_back_in_name_order_whatever_order_they_were_given() -> None:
    given = [ShardSpec("b", "u2"), ShardSpec("c", "u3"), ShardSpec("a", "u1")]
    assert [s.name for s in check_shards(given)] == ["a", "b", "c"]


def test_the_bound_on_shards_holds_at_exactly_the_limit() -> None:
    at_limit = [ShardSpec(f"s{n}", f"url-{n}") for n in range(MAX_SHARDS)]
    assert len(check_shards(at_limit)) == MAX_SHARDS
    with pytest.raises(ValueError, match=str(MAX_SHARDS)):
        check_shards([*at_limit, ShardSpec("extra", "url-extra")])


@pytest.mark.parametrize(
    "shards",
    [
        [ShardSpec("a", "u1"), ShardSpec("a", "u2")],
        [ShardSpec("a", "u1"), ShardSpec("b", "u1")],
    ],
    ids=["same-name", "same-url"],
)
def test_a_repeated_name_or_url_is_refused_naming_it(shards: list[ShardSpec]) -> None:
    # The same URL under two names would make one repository two shards: robots of both would
    # look misplaced to the controller half the time.
    with pytest.raises(ValueError, match="given twice"):
        check_shards(shards)
