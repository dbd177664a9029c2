"""``rollouts/<name>.yaml`` (kind Rollout): which release goes to which robots, how, and when.

Strategies carry safe seed defaults: a failure threshold is always on and waves never move on
without a soak. ``on_halt`` says what a halt does (:class:`HaltPolicy`); like every field but the
operational switches (``paused``, ``aborted``, ``promote``) it is covered by approvals. The
switches are not, so stopping a rollout never waits for reviewers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from fleetcd.compat import Self, StrEnum
from fleetcd.models.base import Document, FrozenModel, Percent, SafeName, SemVer

DEFAULT_FAILURE_PERCENT = 20.0


class FailureThreshold(FrozenModel):
    """A wave fails once more than ``count`` robots, or more than ``percent`` of it, failed."""

    count: int | None = Field(default=None, ge=0)
    percent: float | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        if self.count is None and self.percent is None:
            raise ValueError("give 'count', 'percent' or both")
        return self

    def crossed(self, failed: int, total: int) -> bool:
        if self.count is not None and failed > self.count:
            return True
        return self.percent is not None and total > 0 and failed * 100.0 > self.percent * total


def _default_threshold() -> FailureThreshold:
    return FailureThreshold(percent=DEFAULT_FAILURE_PERCENT)


class AllAtOnce(FrozenModel):
    type: Literal["all_at_once"]
    failure_threshold: FailureThreshold = Field(default_factory=_default_threshold)


class Rolling(FrozenModel):
    type: Literal["rolling"]
    batch_size: int = Field(default=10, ge=1, le=100_000)
    delay_seconds: int = Field(default=300, ge=0, le=7 * 86400)
    failure_threshold: FailureThreshold = Field(default_factory=_default_threshold)


class Canary(FrozenModel):
    """``percent`` of the targets first; any canary failure halts; after ``soak_seconds`` the rest."""

    type: Literal["canary"]
    percent: Percent = 10.0
    soak_seconds: int = Field(default=1800, ge=1, le=30 * 86400)
    failure_threshold: FailureThreshold = Field(default_factory=_default_threshold)


class Wave(FrozenModel):
    """One explicit wave: a cohort and/or a percent of the targets not yet in an earlier wave."""

    name: SafeName
    cohort: SafeName | None = None
    percent: Percent | None = None
    soak_seconds: int = Field(default=1800, ge=1, le=30 * 86400)
    failure_threshold: FailureThreshold = Field(default_factory=_default_threshold)
    min_reported_percent: Percent = 100.0
    manual_promotion: bool = False

    @model_validator(mode="after")
    def _selects_something(self) -> Self:
        if self.cohort is None and self.percent is None:
            raise ValueError("a wave needs 'cohort', 'percent' or both")
        return self


class Waves(FrozenModel):
    type: Literal["waves"]
    waves: list[Wave] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [w.name for w in self.waves]
        if len(names) != len(set(names)):
            raise ValueError("wave names must be unique")
        return self


class BlueGreen(FrozenModel):
    """Every robot stages into its inactive slot; the switch waits until enough have staged."""

    type: Literal["blue_green"]
    min_staged_percent: Percent = 100.0
    stage_timeout_seconds: int = Field(default=3600, ge=60, le=30 * 86400)
    failure_threshold: FailureThreshold = Field(default_factory=_default_threshold)


Strategy = Annotated[AllAtOnce | Rolling | Canary | Waves | BlueGreen, Field(discriminator="type")]


def default_strategy() -> Rolling:
    return Rolling(type="rolling")


class Targets(FrozenModel):
    cohorts: list[SafeName] = Field(default_factory=list)
    devices: list[SafeName] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.cohorts and not self.devices:
            raise ValueError("targets need 'cohorts', 'devices' or both")
        return self


class Schedule(FrozenModel):
    """``not_before`` is an absolute UTC instant; windows are evaluated in each robot's zone."""

    not_before: Annotated[datetime, Field(strict=False)] | None = None
    respect_maintenance_windows: bool = True

    @model_validator(mode="after")
    def _aware(self) -> Self:
        if self.not_before is not None and self.not_before.utcoffset() is None:
            raise ValueError("not_before needs a time zone, e.g. '2026-05-01T06:00:00Z'")
        return self


class HaltPolicy(StrEnum):
    """What the controller does when a wave crosses its failure threshold (``on_halt``)."""

    # Every robot that received the release goes back to the previous one, in every wave that
    # ran (Argo Rollouts' and AWS IoT Jobs' abort: everyone returns to stable).
    ROLLBACK_ALL = "rollback_all"
    # Only the failing wave goes back; robots of waves that passed keep the release.
    ROLLBACK_WAVE = "rollback_wave"
    # Nothing rolls back: the rollout stops dispatching and waits for the operator's next commit.
    PAUSE = "pause"


# Strict mode accepts only enum *instances* from Python data; documents hold the value text.
HaltPolicyName = Annotated[HaltPolicy, Field(strict=False)]


class Rollout(Document):
    kind: Literal["Rollout"]
    name: SafeName
    app: SafeName
    release: SemVer
    targets: Targets
    strategy: Strategy | None = None
    schedule: Schedule = Field(default_factory=Schedule)
    gates: list[SafeName] = Field(default_factory=list)
    on_halt: HaltPolicyName = HaltPolicy.ROLLBACK_ALL
    download_rate_per_minute: int | None = Field(default=None, ge=1, le=100_000)
    device_timeout_seconds: int | None = Field(default=None, ge=60, le=30 * 86400)
    paused: bool = False
    aborted: bool = False
    promote: int = Field(default=0, ge=0, le=1000)

    @model_validator(mode="before")
    @classmethod
    def _replaced_fields(cls, data: object) -> object:
        if isinstance(data, dict) and "auto_rollback" in data:
            raise ValueError(
                "'auto_rollback' was replaced by 'on_halt': rollback_all (the default), "
                "rollback_wave, or pause (what 'auto_rollback: false' did)"
            )
        return data


OPERATIONAL_FIELDS = frozenset({"paused", "aborted", "promote"})
