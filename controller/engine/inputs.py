"""What the rollout engine is given and what it returns, plus the settings derived from them.

Pure: the reconcile loop gathers every input (models read from main and the state branch, the
wave plan, the device files, ``now``) and applies every output (state, records, audit events)
itself. Nothing here reads a clock, a file or a repository.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.audit.events import AuditEvent
from controller.records.ids import Generation
from controller.records.model import DeploymentRecord
from controller.state.model import DeviceFile, RolloutState
from fleetcd.models.base import MaintenanceWindow
from fleetcd.models.device import Device
from fleetcd.models.fleet import Defaults
from fleetcd.models.requirement import Dependent, Requirement
from fleetcd.models.rollout import BlueGreen, Rollout, Strategy, default_strategy
from fleetcd.planning.waves import PlannedWave

RATE_WINDOW = timedelta(seconds=60)  # the download rate limit counts dispatches of the last minute


@dataclass(frozen=True)
class DeviceConfig:
    """The config instances one robot gets with a release: files in precedence order, merged sha256."""

    files: tuple[str, ...] = ()
    sha256: str | None = None


NO_CONFIG = DeviceConfig()


@dataclass(frozen=True)
class EngineInput:
    """One rollout at one reconcile.

    ``planned`` must be planned as if the rollout were neither paused nor aborted (selection skips
    everyone of a paused rollout); the engine freezes wave membership itself while paused.
    ``device_files`` must already hold the records written for other rollouts in this reconcile.
    """

    rollout: Rollout
    release_sha256: str
    generation: Generation
    commit: str
    planned: Sequence[PlannedWave]
    skipped: Sequence[tuple[str, str]]
    devices: Mapping[str, Device]
    cohort_windows: Mapping[str, Sequence[MaintenanceWindow]]
    device_files: Mapping[str, DeviceFile]
    state: RolloutState | None
    previous: tuple[str, str] | None
    defaults: Defaults
    now: datetime
    # The release's ``requires`` and the releases of other apps on main that require this app
    # (controller.engine.requires): a robot switches only when both allow it.
    requires: Sequence[Requirement] = ()
    required_by: Sequence[Dependent] = ()
    # sha256 of every release file a withdrawal on main names: none of them is deployed anew, not
    # even as a rollback target.
    withdrawn: frozenset[str] = frozenset()
    # device -> the config it should run with the release: (applying config files in precedence
    # order, sha256 of their merge or None when none applies). Missing: no config.
    configs: Mapping[str, DeviceConfig] = field(default_factory=dict)
    # Every robot of ``planned``'s waves, when the caller holds them as a set already (a rollout's
    # plan keeps one per tree of main); None: the engine collects them.
    members: frozenset[str] | None = None

    def config_of(self, device: str) -> DeviceConfig:
        return self.configs.get(device, NO_CONFIG)


@dataclass(frozen=True)
class EngineOutput:
    state: RolloutState
    records: Mapping[str, tuple[DeploymentRecord, ...]]
    events: Sequence[AuditEvent]


def strategy_of(inp: EngineInput) -> Strategy:
    """The rollout's own strategy, else the fleet default, else the built-in (as the planner does)."""
    return inp.rollout.strategy or inp.defaults.strategy or default_strategy()


def device_timeout(inp: EngineInput) -> timedelta:
    """How long a robot has for a deployment, from dispatch (or from the blue/green switch)."""
    seconds = inp.rollout.device_timeout_seconds or inp.defaults.device_timeout_seconds
    return timedelta(seconds=seconds)


def stage_timeout(inp: EngineInput) -> timedelta:
    """Blue/green staging has its own bound (``stage_timeout_seconds``); other strategies never stage."""
    strategy = strategy_of(inp)
    if isinstance(strategy, BlueGreen):
        return timedelta(seconds=strategy.stage_timeout_seconds)
    return device_timeout(inp)


def rate_per_minute(inp: EngineInput) -> int | None:
    """New downloads allowed per minute for this rollout; None means unlimited."""
    if inp.rollout.download_rate_per_minute is not None:
        return inp.rollout.download_rate_per_minute
    return inp.defaults.download_rate_per_minute


def windows_of(inp: EngineInput, device: str) -> list[MaintenanceWindow]:
    """The robot's own maintenance windows plus those of its cohorts."""
    own = inp.devices[device].maintenance_windows if device in inp.devices else []
    return [*own, *inp.cohort_windows.get(device, ())]


def zone_of(inp: EngineInput, device: str) -> str:
    model = inp.devices.get(device)
    return model.timezone if model is not None else "UTC"
