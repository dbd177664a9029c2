"""The settings the rollout engine derives from its inputs (controller.engine.inputs), as precedence tables.

A rollout's own value wins over the fleet's default, which wins over the built-in one, and the planner
and the engine must agree on that order: if the engine timed robots out on the fleet default while
the plan showed the rollout's own timeout, a reviewer would approve one thing and the fleet would
do another. Windows and zones: a robot's own windows and its cohorts' apply together, in its own zone.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import pytest

from controller.engine.inputs import (
    NO_CONFIG,
    RATE_WINDOW,
    DeviceConfig,
    EngineInput,
    device_timeout,
    rate_per_minute,
    stage_timeout,
    strategy_of,
    windows_of,
    zone_of,
)
from controller.records.ids import Generation
from fleetcd.compat import UTC
from fleetcd.models.base import MaintenanceWindow
from fleetcd.models.device import Device
from fleetcd.models.fleet import Defaults, Fleet
from fleetcd.models.rollout import BlueGreen, Canary, Rolling, Rollout
from fleetcd.planning.waves import effective_strategy

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def rollout(**fields: Any) -> Rollout:
    doc: dict[str, Any] = {
        "apiVersion": "fleetcd.dev/v1",
        "kind": "Rollout",
        "name": "nav-1-1",
        "app": "nav",
        "release": "1.1.0",
        "targets": {"cohorts": ["canary"]},
        **fields,
    }
    return Rollout.model_validate(doc)


def device(device_id: str, **fields: Any) -> Device:
    doc: dict[str, Any] = {
        "apiVersion": "fleetcd.dev/v1",
        "kind": "Device",
        "id": device_id,
        "family": "amr",
        "hardware": {"model": "amr-x", "revision": 3},
        "site": "ber",
        **fields,
    }
    return Device.model_validate(doc)


def window(start: str, end: str, **fields: Any) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate({"start": start, "end": end, **fields})


def engine_input(
    rollout_model: Rollout | None = None, defaults: Defaults | None = None, **fields: Any
) -> EngineInput:
    base = EngineInput(
        rollout=rollout_model or rollout(),
        release_sha256="a" * 64,
        generation=Generation(1, "f" * 64),
        commit="c" * 40,
        planned=(),
        skipped=(),
        devices={},
        cohort_windows={},
        device_files={},
        state=None,
        previous=None,
        defaults=defaults or Defaults(),
        now=NOW,
    )
    return dataclasses.replace(base, **fields)


# --- strategy -----------------------------------------------------------------------------------------


ROLLING_FAST = {"type": "rolling", "batch_size": 50, "delay_seconds": 10}
CANARY = {"type": "canary", "percent": 5, "soak_seconds": 600}


@pytest.mark.parametrize(
    ("own", "fleet_default", "expected"),
    [
        (CANARY, ROLLING_FAST, Canary),
        (None, ROLLING_FAST, Rolling),
        (None, None, Rolling),
        (CANARY, None, Canary),
    ],
    ids=["rollout-wins", "fleet-default", "built-in", "rollout-only"],
)
def test_the_strategy_is_the_rollouts_else_the_fleets_else_rolling(
    own: dict[str, Any] | None, fleet_default: dict[str, Any] | None, expected: type
) -> None:
    inp = engine_input(
        rollout(**({"strategy": own} if own else {})),
        Defaults.model_validate({"strategy": fleet_default} if fleet_default else {}),
    )
    assert isinstance(strategy_of(inp), expected)
    if own is None and fleet_default is not None:
        assert strategy_of(inp).model_dump(exclude_defaults=True) == {**ROLLING_FAST}
    if own is None and fleet_default is None:
        assert strategy_of(inp) == Rolling(type="rolling")


@pytest.mark.parametrize("own", [None, CANARY], ids=["default", "own"])
@pytest.mark.parametrize("fleet_default", [None, ROLLING_FAST], ids=["no-fleet-default", "fleet-default"])
def test_the_engine_and_the_planner_pick_the_same_strategy(
    own: dict[str, Any] | None, fleet_default: dict[str, Any] | None
) -> None:

    defaults = Defaults.model_validate({"strategy": fleet_default} if fleet_default else {})
    model = rollout(**({"strategy": own} if own else {}))
    fleet = Fleet.model_validate(
        {
            "apiVersion": "fleetcd.dev/v1",
            "kind": "Fleet",
            "name": "demo",
            "defaults": defaults.model_dump(mode="json", exclude_none=True),
        }
    )
    assert strategy_of(engine_input(model, defaults)) == effective_strategy(model, fleet)


# --- timeouts and rate --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("own", "fleet_default", "seconds"),
    [(600, 7200, 600), (None, 7200, 7200), (None, None, Defaults().device_timeout_seconds)],
    ids=["rollout-wins", "fleet-default", "built-in"],
)
def test_device_timeout_precedence(own: int | None, fleet_default: int | None, seconds: int) -> None:
    defaults = Defaults() if fleet_default is None else Defaults(device_timeout_seconds=fleet_default)
    inp = engine_input(rollout(**({"device_timeout_seconds": own} if own else {})), defaults)
    assert device_timeout(inp) == timedelta(seconds=seconds)


def test_blue_green_staging_has_its_own_timeout_other_strategies_the_device_timeout() -> None:
    bg = engine_input(
        rollout(strategy={"type": "blue_green", "stage_timeout_seconds": 900}, device_timeout_seconds=120)
    )
    assert isinstance(strategy_of(bg), BlueGreen)
    assert stage_timeout(bg) == timedelta(seconds=900)
    assert device_timeout(bg) == timedelta(seconds=120)
    rolling = engine_input(rollout(device_timeout_seconds=120))
    assert stage_timeout(rolling) == timedelta(seconds=120)


def test_a_fleet_default_blue_green_strategy_also_bounds_staging() -> None:
    defaults = Defaults.model_validate({"strategy": {"type": "blue_green", "stage_timeout_seconds": 1800}})
    assert stage_timeout(engine_input(defaults=defaults)) == timedelta(seconds=1800)


@pytest.mark.parametrize(
    ("own", "fleet_default", "rate"),
    [(5, 100, 5), (None, 100, 100), (None, None, None), (1, None, 1)],
    ids=["rollout-wins", "fleet-default", "unlimited", "rollout-only"],
)
def test_download_rate_precedence(own: int | None, fleet_default: int | None, rate: int | None) -> None:
    defaults = Defaults(download_rate_per_minute=fleet_default)
    inp = engine_input(rollout(**({"download_rate_per_minute": own} if own else {})), defaults)
    assert rate_per_minute(inp) == rate


def test_the_rate_window_is_one_minute() -> None:
    assert timedelta(minutes=1) == RATE_WINDOW


# --- windows and zones --------------------------------------------------------------------------------


def test_a_robots_own_and_its_cohorts_windows_apply_together() -> None:
    own = window("22:00", "04:00")
    cohort = window("12:00", "13:00", timezone="Asia/Tokyo")
    inp = engine_input(
        devices={"r1": device("r1", maintenance_windows=[own.model_dump()], timezone="Europe/Berlin")},
        cohort_windows={"r1": [cohort]},
    )
    assert windows_of(inp, "r1") == [own, cohort]
    assert zone_of(inp, "r1") == "Europe/Berlin"


def test_a_robot_without_a_device_file_has_only_its_cohorts_windows_and_utc() -> None:
    cohort = window("01:00", "02:00")
    inp = engine_input(cohort_windows={"ghost": [cohort]})
    assert windows_of(inp, "ghost") == [cohort]
    assert zone_of(inp, "ghost") == "UTC"
    assert windows_of(inp, "nobody") == []


# --- configs ------------------------------------------------------------------------------------------


def test_a_robot_without_config_gets_none() -> None:
    config = DeviceConfig(files=("configs/nav/default.yaml", "configs/nav/device-r1.yaml"), sha256="d" * 64)
    inp = engine_input(configs={"r1": config})
    assert inp.config_of("r1") is config
    assert inp.config_of("r2") is NO_CONFIG
    assert (NO_CONFIG.files, NO_CONFIG.sha256) == ((), None)
