"""Target resolution: cohort membership, skip reasons and their precedence, and a rollout's stage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from fleetcd.models import Cohort, Device, Release, Rollout, Stage
from fleetcd.planning.selection import cohort_members, device_stages, resolve_targets, rollout_stage
from fleetcd.reasons import SkipReason

API = "fleetcd.dev/v1"
IMAGE = "registry.fleet.test/nav@sha256:" + "0" * 64


def device(device_id: str, **overrides: Any) -> Device:
    doc: dict[str, Any] = {
        "apiVersion": API,
        "kind": "Device",
        "id": device_id,
        "family": "amr",
        "site": "berlin",
    }
    doc["hardware"] = {"model": "mk2", "revision": 3}
    return Device.model_validate(doc | overrides)


def cohort(name: str, stage: str = "production", **fields: Any) -> Cohort:
    doc = {"apiVersion": API, "kind": "Cohort", "name": name, "stage": stage}
    return Cohort.model_validate(doc | fields)


def release(**compatibility: Any) -> Release:
    doc: dict[str, Any] = {"apiVersion": API, "kind": "Release", "app": "nav", "version": "1.0.0"}
    doc["artifacts"] = [{"kind": "container_image", "name": "nav", "image": IMAGE}]
    doc["compatibility"] = compatibility
    return Release.model_validate(doc)


def rollout(cohorts: Sequence[str] = (), devices: Sequence[str] = (), **fields: Any) -> Rollout:
    doc: dict[str, Any] = {
        "apiVersion": API,
        "kind": "Rollout",
        "name": "r",
        "app": "nav",
        "release": "1.0.0",
    }
    doc["targets"] = {"cohorts": list(cohorts), "devices": list(devices)}
    return Rollout.model_validate(doc | fields)


DEVICES = {
    "a": device("a"),
    "b": device("b", site="munich", labels={"ring": "early"}),
    "old": device("old", decommissioned=True),
    "mk1": device("mk1", hardware={"model": "mk1", "revision": 1}),
    "arm": device("arm", family="arm"),
}


def test_static_and_selector_members_are_merged_and_unknown_ids_dropped() -> None:
    mixed = cohort("mixed", devices=["a", "ghost"], selector={"labels": {"ring": "early"}})
    assert cohort_members(mixed, DEVICES) == ["a", "b"]


HW = SkipReason.INCOMPATIBLE_HARDWARE
FAMILY = SkipReason.INCOMPATIBLE_FAMILY
PAUSED: dict[str, Any] = {"paused": True}
ABORTED: dict[str, Any] = {"aborted": True}


@pytest.mark.parametrize(
    ("target", "compat", "fields", "expected"),
    [
        pytest.param("a", {}, {}, None, id="eligible"),
        pytest.param("ghost", {}, {}, SkipReason.UNKNOWN, id="unknown"),
        pytest.param("old", {}, PAUSED, SkipReason.DECOMMISSIONED, id="decommissioned-beats-paused"),
        pytest.param("mk1", {"models": ["mk2"]}, {}, HW, id="model"),
        pytest.param("mk1", {"hardware_revision": {"min": 2}}, {}, HW, id="revision"),
        pytest.param("arm", {"families": ["amr"]}, ABORTED, FAMILY, id="family-beats-aborted"),
        pytest.param("a", {}, PAUSED | ABORTED, SkipReason.ABORTED, id="aborted-beats-paused"),
        pytest.param("a", {}, PAUSED, SkipReason.PAUSED, id="paused"),
    ],
)
def test_skip_reason_decision_table(
    target: str, compat: dict[str, Any], fields: dict[str, Any], expected: SkipReason | None
) -> None:
    selection = resolve_targets(rollout(devices=[target], **fields), release(**compat), DEVICES, {})
    if expected is None:
        assert selection.eligible == (target,) and selection.skipped == ()
    else:
        assert selection.eligible == () and selection.skipped == ((target, expected),)


def test_unknown_ids_listed_in_a_cohort_stay_visible_as_skipped() -> None:
    cohorts = {"prod": cohort("prod", devices=["a", "ghost"])}
    selection = resolve_targets(rollout(cohorts=["prod"]), release(), DEVICES, cohorts)
    assert selection.eligible == ("a",)
    assert selection.skipped == (("ghost", SkipReason.UNKNOWN),)
    assert selection.cohorts_of == {"a": ("prod",), "ghost": ("prod",)}


@pytest.mark.parametrize(
    ("cohorts", "devices", "expected"),
    [
        pytest.param(["lab"], [], Stage.STAGING, id="staging-cohort"),
        pytest.param(["lab", "early"], [], Stage.CANARY, id="highest-cohort-wins"),
        pytest.param(["lab"], ["b"], Stage.CANARY, id="direct-device-at-its-cohort-stage"),
        pytest.param(["lab"], ["arm"], Stage.PRODUCTION, id="direct-device-in-no-cohort-is-production"),
    ],
)
def test_rollout_stage_is_the_highest_it_touches(
    cohorts: list[str], devices: list[str], expected: Stage
) -> None:
    known = {
        "lab": cohort("lab", "staging", devices=["a"]),
        "early": cohort("early", "canary", devices=["b"]),
    }
    assert rollout_stage(rollout(cohorts, devices), known, device_stages(known, DEVICES)) is expected
