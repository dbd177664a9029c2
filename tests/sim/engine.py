"""The pure rollout engine driven tick by tick: the simulator's layer for the ``test_engine_*`` scenarios.

It plays the reconcile loop's part: it plans waves with the real planner, derives generations
with the real id scheme, calls :func:`controller.engine.advance` at an injected ``now``, writes
the returned records back into device files, and lets tests play robots that report.
No git and no gpg are involved because the engine itself uses neither.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from controller.audit.events import AuditEvent, AuditKind
from controller.engine import EngineInput, EngineOutput, advance
from controller.engine.inputs import DeviceConfig
from controller.records import (
    Action,
    Connectivity,
    DeploymentRecord,
    DeviceState,
    Generation,
    apply_report,
    deployment_id,
    rollout_generation,
)
from controller.state.model import DeviceFile, RolloutPhase, RolloutState, WaveState
from fleetcd.compat import UTC
from fleetcd.desired.configset import merged_sha256
from fleetcd.models.base import MaintenanceWindow
from fleetcd.models.device import Device
from fleetcd.models.fleet import Defaults
from fleetcd.models.rollout import Rollout
from fleetcd.planning.waves import PlannedWave, effective_strategy, plan_waves

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)  # a Monday
SHA_NEW = "1" * 64
SHA_OLD = "0" * 64
NAME = "navstack-1-1"


def device(device_id: str, timezone: str = "UTC", windows: Sequence[dict[str, Any]] = ()) -> Device:
    return Device.model_validate(
        {
            "apiVersion": "fleetcd.dev/v1",
            "kind": "Device",
            "id": device_id,
            "family": "amr",
            "hardware": {"model": "amr-x", "revision": 2},
            "site": "ber",
            "timezone": timezone,
            "maintenance_windows": list(windows),
        }
    )


def window(start: str, end: str, **extra: Any) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate({"start": start, "end": end, **extra})


def robots(count: int, prefix: str = "amr") -> list[str]:
    return [f"{prefix}-{i:02d}" for i in range(1, count + 1)]


def rollout_doc(
    devices: Iterable[str], strategy: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "fleetcd.dev/v1",
        "kind": "Rollout",
        "name": NAME,
        "app": "navstack",
        "release": "1.1.0",
        "targets": {"devices": sorted(devices)},
    }
    if strategy is not None:
        doc["strategy"] = strategy
    doc.update(fields)
    return doc


class Sim:
    """One rollout over a set of robots, advanced tick by tick with an injected clock."""

    def __init__(
        self,
        doc: dict[str, Any],
        devices: Sequence[Device] | None = None,
        *,
        previous: tuple[str, str] | None = ("1.0.0", SHA_OLD),
        defaults: Defaults | None = None,
        cohort_windows: Mapping[str, Sequence[MaintenanceWindow]] | None = None,
        now: datetime = T0,
    ) -> None:
        self.doc = doc
        self.rollout = Rollout.model_validate(doc)
        ids = doc["targets"]["devices"]
        self.devices = {d.id: d for d in (devices if devices is not None else [device(i) for i in ids])}
        self.previous = previous
        self.defaults = defaults or Defaults()
        self.cohort_windows = dict(cohort_windows or {})
        self.release_sha256 = SHA_NEW
        self.now = now
        self.files: dict[str, DeviceFile] = {}
        self.state: RolloutState | None = None
        self.events: list[AuditEvent] = []
        self.last: EngineOutput | None = None
        self.withdrawn: frozenset[str] = frozenset()  # release digests withdrawn on main
        # the app's config set (its Merkle root) and each robot's merged config
        self.config_root: str | None = None
        self.configs: dict[str, DeviceConfig] = {}

    def set_config(self, values: Mapping[str, Any], *devs: str) -> None:
        """Commit config ``values`` for ``devs`` (all robots when none named): a new config set."""
        sha = merged_sha256(dict(values))
        for dev in devs or tuple(self.devices):
            self.configs[dev] = DeviceConfig((f"configs/navstack/device-{dev}.yaml",), sha)
        listing = sorted((d, c.sha256) for d, c in self.configs.items())
        self.config_root = hashlib.sha256(json.dumps(listing).encode()).hexdigest()

    # --- the operator edits main ------------------------------------------------------------------

    def edit(self, **fields: Any) -> None:
        self.doc = {**self.doc, **fields}
        self.rollout = Rollout.model_validate(self.doc)

    @property
    def commit(self) -> str:
        text = json.dumps([self.doc, self.config_root], sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()

    def generation(self) -> Generation:
        current = None
        if self.state is not None:
            current = Generation(self.state.generation, self.state.generation_fingerprint)
        return rollout_generation(self.doc, self.release_sha256, current, self.config_root)

    def planned(self) -> list[PlannedWave]:
        strategy = effective_strategy(self.rollout, None)
        return plan_waves(NAME, strategy, sorted(self.devices), {}, {})

    # --- the reconcile loop -------------------------------------------------------------------------

    def input(self, now: datetime | None = None) -> EngineInput:
        return EngineInput(
            rollout=self.rollout,
            release_sha256=self.release_sha256,
            generation=self.generation(),
            commit=self.commit,
            planned=self.planned(),
            skipped=(),
            devices=self.devices,
            cohort_windows=self.cohort_windows,
            device_files=dict(self.files),
            state=self.state,
            previous=self.previous,
            defaults=self.defaults,
            now=now or self.now,
            configs=dict(self.configs),
            withdrawn=self.withdrawn,
        )

    def apply(self, out: EngineOutput) -> None:
        self.state = out.state
        for dev, records in out.records.items():
            self.files[dev] = self._file(dev).model_copy(update={"records": records})
        self.events.extend(out.events)
        self.last = out

    def tick(self, after: timedelta | None = None) -> EngineOutput:
        if after is not None:
            self.now += after
        out = advance(self.input())
        self.apply(out)
        return out

    # --- robots -------------------------------------------------------------------------------------

    def _file(self, dev: str) -> DeviceFile:
        return self.files.get(dev) or DeviceFile(state=DeviceState(device=dev))

    def record(self, dev: str, sha: str | None = None) -> DeploymentRecord | None:
        assert self.state is not None
        config = self.configs.get(dev)
        wanted = deployment_id(
            NAME,
            self.state.generation,
            dev,
            sha or self.release_sha256,
            config.sha256 if config and not sha else None,
        )
        return next((r for r in self._file(dev).records if r.id == wanted), None)

    def rollback(self, dev: str) -> DeploymentRecord | None:
        return None if self.previous is None else self.record(dev, self.previous[1])

    def seen(self, dev: str, at: datetime | None = None) -> None:
        state = DeviceState(device=dev, connectivity=Connectivity.ONLINE, last_seen=at or self.now)
        self.files[dev] = self._file(dev).model_copy(update={"state": state})

    def report(self, dev: str, *steps: str, error: str = "none", rollback: bool = False) -> None:
        """The robot reports ``steps`` (activities) for its deployment, one second apart."""
        current = self.rollback(dev) if rollback else self.record(dev)
        assert current is not None, f"{dev} has no {'rollback' if rollback else 'deployment'}"
        for offset, activity in enumerate(steps):
            last = offset == len(steps) - 1
            current = apply_report(current, activity, error if last else "none", activity, self.now)
        records = tuple(current if r.id == current.id else r for r in self._file(dev).records)
        self.files[dev] = self._file(dev).model_copy(update={"records": records})
        self.seen(dev)

    def succeed(self, *devs: str) -> None:
        for dev in devs:
            self.report(dev, "downloading", "applying", "watching", "deployed")

    def fail(self, *devs: str) -> None:
        for dev in devs:
            self.report(dev, "downloading", "applying", "failed", error="failed")

    # --- observations -------------------------------------------------------------------------------

    def kinds(self, events: Iterable[AuditEvent] | None = None) -> list[AuditKind]:
        return [e.kind for e in (self.events if events is None else events)]

    def dispatched(self) -> list[str]:
        """Robots holding a deploy/stage record of the current generation."""
        return sorted(d for d in self.devices if self.record(d) is not None)

    def rollbacks(self) -> list[str]:
        return sorted(
            d for d in self.devices if (r := self.rollback(d)) is not None and r.action is Action.ROLLBACK
        )

    @property
    def rollout_state(self) -> RolloutState:
        assert self.state is not None, "tick() first"
        return self.state

    def phase(self) -> RolloutPhase:
        return self.rollout_state.phase

    def wave(self, name: str) -> WaveState:
        assert self.state is not None
        return next(w for w in self.state.waves if w.name == name)
