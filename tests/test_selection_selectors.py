"""Cohort selectors field by field, and the stage a robot is at through them (planning/selection.py).

A selector is how most of a fleet is targeted, so each criterion is checked on its own (a value in
the list matches, one outside does not), then their combination: every given criterion must hold
(AND), the values within one list are alternatives (OR), revision bounds are inclusive on both
sides, and every listed label must be present with exactly that value. A seeded table then holds
``cohort_members`` to that reading of the Cohort docs, written out independently here.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from fleetcd.models import Cohort, Device, Stage
from fleetcd.planning.selection import cohort_members, device_stages, resolve_targets, selector_matches
from fleetcd.reasons import SkipReason
from tests.test_selection import cohort, device, release, rollout

ROBOT = device(
    "r1",
    family="amr",
    site="berlin",
    hardware={"model": "mk2", "revision": 3},
    labels={"ring": "early", "dock": "north"},
)


def selected(**selector: Any) -> bool:
    return selector_matches(cohort("c", selector=selector), ROBOT)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param({"families": ["amr"]}, True, id="family"),
        pytest.param({"families": ["arm", "amr"]}, True, id="family-one-of-several"),
        pytest.param({"families": ["arm"]}, False, id="family-other"),
        pytest.param({"sites": ["berlin"]}, True, id="site"),
        pytest.param({"sites": ["munich"]}, False, id="site-other"),
        pytest.param({"models": ["mk1", "mk2"]}, True, id="model-one-of-several"),
        pytest.param({"models": ["mk1"]}, False, id="model-other"),
        pytest.param({"hardware_revision": {"min": 3}}, True, id="revision-at-min"),
        pytest.param({"hardware_revision": {"max": 3}}, True, id="revision-at-max"),
        pytest.param({"hardware_revision": {"min": 3, "max": 3}}, True, id="revision-exact"),
        pytest.param({"hardware_revision": {"min": 4}}, False, id="revision-below-min"),
        pytest.param({"hardware_revision": {"max": 2}}, False, id="revision-above-max"),
        pytest.param({"labels": {"ring": "early"}}, True, id="label"),
        pytest.param({"labels": {"ring": "early", "dock": "north"}}, True, id="every-label"),
        pytest.param({"labels": {"ring": "early", "dock": "south"}}, False, id="one-label-differs"),
        pytest.param({"labels": {"ring": "Early"}}, False, id="label-value-is-case-sensitive"),
        pytest.param({"labels": {"owner": "early"}}, False, id="label-missing"),
        pytest.param({"families": ["amr"], "sites": ["berlin"], "models": ["mk2"]}, True, id="all-hold"),
        pytest.param({"families": ["amr"], "sites": ["munich"]}, False, id="and-not-or"),
        pytest.param({"sites": ["berlin"], "hardware_revision": {"min": 4}}, False, id="revision-vetoes"),
        pytest.param({"models": ["mk2"], "labels": {"ring": "late"}}, False, id="label-vetoes"),
    ],
)
def test_selector_decision_table(selector: dict[str, Any], expected: bool) -> None:
    assert selected(**selector) is expected


def test_a_cohort_without_a_selector_matches_no_robot_by_attributes() -> None:
    static = cohort("static", devices=["r1"])
    assert not selector_matches(static, ROBOT)
    assert cohort_members(static, {"r1": ROBOT}) == ["r1"]


def test_a_decommissioned_robot_a_selector_matches_is_a_member_but_skipped() -> None:
    devices = {"r1": ROBOT, "old": device("old", decommissioned=True)}
    cohorts = {"amr": cohort("amr", selector={"families": ["amr"]})}
    assert cohort_members(cohorts["amr"], devices) == ["old", "r1"]
    chosen = resolve_targets(rollout(cohorts=["amr"]), release(), devices, cohorts)
    assert chosen.eligible == ("r1",)
    assert chosen.skipped == (("old", SkipReason.DECOMMISSIONED),)


def test_a_robot_in_two_targeted_cohorts_is_chosen_once_with_both_named() -> None:
    devices = {"r1": ROBOT, "r2": device("r2", site="munich")}
    cohorts = {
        "berlin": cohort("berlin", selector={"sites": ["berlin"]}),
        "amr": cohort("amr", devices=["r1"], selector={"families": ["amr"]}),
    }
    chosen = resolve_targets(rollout(cohorts=["berlin", "amr"], devices=["r1"]), release(), devices, cohorts)
    assert chosen.eligible == ("r1", "r2")
    assert chosen.cohorts_of == {"r1": ("amr", "berlin"), "r2": ("amr",)}


def test_a_robots_stage_is_the_highest_of_every_cohort_it_is_in_by_list_or_selector() -> None:
    devices = {
        "r1": ROBOT,
        "r2": device("r2", site="munich"),
        "r3": device("r3", family="arm", site="munich"),
    }
    cohorts = {
        "lab": cohort("lab", "staging", devices=["r1", "r2"]),
        "berlin": cohort("berlin", "canary", selector={"sites": ["berlin"]}),
        "amr": cohort("amr", "staging", selector={"families": ["amr"]}),
    }
    assert device_stages(cohorts, devices) == {"r1": Stage.CANARY, "r2": Stage.STAGING}


# --- seeded: cohort_members against the documented reading ---------------------------------------


def expected_match(selector: dict[str, Any], doc: dict[str, Any]) -> bool:
    """AND over the criteria given, OR within each list, inclusive revision bounds, labels all-of."""
    checks = [
        doc["family"] in selector.get("families", [doc["family"]]),
        doc["site"] in selector.get("sites", [doc["site"]]),
        doc["hardware"]["model"] in selector.get("models", [doc["hardware"]["model"]]),
        all(doc["labels"].get(k) == v for k, v in selector.get("labels", {}).items()),
    ]
    bounds = selector.get("hardware_revision", {})
    revision = doc["hardware"]["revision"]
    checks.append(bounds.get("min", revision) <= revision <= bounds.get("max", revision))
    return all(checks)


def random_selector(rng: random.Random) -> dict[str, Any]:
    options: dict[str, Any] = {
        "families": rng.sample(["amr", "arm", "tug"], rng.randint(1, 2)),
        "sites": rng.sample(["ber", "muc", "ham"], rng.randint(1, 2)),
        "models": rng.sample(["mk1", "mk2", "mk3"], rng.randint(1, 2)),
        "labels": dict(rng.sample([("ring", "early"), ("dock", "n"), ("ring", "late")], 1)),
    }
    low = rng.randint(0, 4)
    options["hardware_revision"] = rng.choice([{"min": low}, {"max": low}, {"min": low, "max": low + 1}])
    chosen = rng.sample(sorted(options), rng.randint(1, 3))
    return {key: options[key] for key in chosen}


@pytest.mark.parametrize("seed", range(40))
def test_cohort_members_are_exactly_the_robots_the_documented_rule_picks(seed: int) -> None:
    rng = random.Random(seed)
    docs = []
    for n in range(30):
        labels = dict(rng.sample([("ring", "early"), ("ring", "late"), ("dock", "n")], rng.randint(0, 2)))
        docs.append(
            {
                "id": f"r-{n:02d}",
                "family": rng.choice(["amr", "arm", "tug"]),
                "site": rng.choice(["ber", "muc", "ham"]),
                "hardware": {"model": rng.choice(["mk1", "mk2", "mk3"]), "revision": rng.randint(0, 5)},
                "labels": labels,
            }
        )
    devices: dict[str, Device] = {d["id"]: device(d["id"], **d) for d in docs}
    selector = random_selector(rng)
    listed = [f"r-{n:02d}" for n in rng.sample(range(40), 3)]  # some ids beyond the fleet
    group = Cohort.model_validate(
        {"apiVersion": "fleetcd.dev/v1", "kind": "Cohort", "name": "g", "stage": "canary"}
        | {"devices": listed, "selector": selector}
    )
    want = {d["id"] for d in docs if expected_match(selector, d)} | (set(listed) & set(devices))
    assert cohort_members(group, devices) == sorted(want), selector
