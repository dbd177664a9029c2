"""``cohorts/<name>.yaml`` (kind Cohort): a named group of robots at one stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fleetcd.compat import Self
from fleetcd.models.base import Document, FrozenModel, MaintenanceWindow, SafeName, StageName


class RevisionRange(FrozenModel):
    """Inclusive bounds on ``hardware.revision``; either side may be open."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self

    def contains(self, revision: int) -> bool:
        return (self.min is None or revision >= self.min) and (self.max is None or revision <= self.max)


class Selector(FrozenModel):
    """Matches devices by attributes; every given criterion must hold (AND), lists are OR."""

    families: list[SafeName] = Field(default_factory=list)
    sites: list[SafeName] = Field(default_factory=list)
    models: list[SafeName] = Field(default_factory=list)
    hardware_revision: RevisionRange | None = None
    labels: dict[SafeName, str] = Field(default_factory=dict)


class Cohort(Document):
    kind: Literal["Cohort"]
    name: SafeName
    stage: StageName
    devices: list[SafeName] = Field(default_factory=list)
    selector: Selector | None = None
    maintenance_windows: list[MaintenanceWindow] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_members(self) -> Self:
        if not self.devices and self.selector is None:
            raise ValueError("a cohort needs 'devices', 'selector' or both")
        return self
