"""What the steps of one reconcile hand each other: :class:`ReconcileContext`.

Each step of :data:`controller.reconcile.steps.STEPS` reads what earlier steps put here and adds
its own part; the write path (:mod:`controller.reconcile.write`) reads whatever got this far.
Values computed once per reconcile (the release digests, the planned waves) are kept here so no
later step computes them again. No I/O of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from controller.audit.events import AuditEvent
from controller.reconcile.delivery_step import Delivered
from controller.reconcile.result import ReconcileResult
from controller.reconcile.rollouts import FleetContext, PlannedRollout
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.shards import ShardView
from controller.reconcile.source import Fetched
from controller.reconcile.statebranch import StateSnapshot
from controller.state.model import DeviceFile, RolloutState
from fleetcd.errors import Diagnostic
from fleetcd.git.repo import Oid, Repository

T = TypeVar("T")


class StepOrderError(RuntimeError):
    """A step read what an earlier step did not produce: a bug in :data:`STEPS`' order."""


@dataclass
class ReconcileContext:
    repo: Repository
    settings: ControllerSettings
    now: datetime
    result: ReconcileResult = field(default_factory=lambda: ReconcileResult(main=""))
    step: str = ""  # the step running now, named in a failure's reason
    # fetch
    fetched: Fetched | None = None
    shards: ShardView | None = None  # with status shards: what each one holds and which did not answer
    snapshot: StateSnapshot | None = None
    files: dict[str, bytes] = field(default_factory=dict)  # main's tree
    problems: list[Diagnostic] = field(default_factory=list)
    # verify history: only a verified audit log is ever appended to
    audit_verified: bool = False
    # load & validate
    fleet_ctx: FleetContext | None = None
    # ingest, plan
    devices: dict[str, DeviceFile] = field(default_factory=dict)
    reports_ingested: int = 0  # reports with a new seq (the result counts them once applied)
    # Each refusal's audit event and its reason (the result counts those the log newly records).
    rejections: list[tuple[AuditEvent, str]] = field(default_factory=list)
    rollouts: dict[str, RolloutState] = field(default_factory=dict)
    planned: dict[str, PlannedRollout] = field(default_factory=dict)  # for the receipts
    # deliver
    desired: Delivered | None = None

    @property
    def main(self) -> str:
        return str(self.need(self.fetched, "fetched").main)

    @property
    def status_refs(self) -> Mapping[str, Oid]:
        return self.need(self.fetched, "fetched").status

    @property
    def state(self) -> StateSnapshot:
        return self.need(self.snapshot, "snapshot")

    @property
    def fleet(self) -> FleetContext:
        return self.need(self.fleet_ctx, "fleet_ctx")

    @staticmethod
    def need(value: T | None, name: str) -> T:
        if value is None:
            raise StepOrderError(f"{name} is read before the step that produces it")
        return value
