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
    """Matches devices by attributes; every given criterion must hold (AND), lists are OR.

    A selector names at least one criterion: ``{}``, empty lists, an empty label map or open
    revision bounds alone would match every robot in the fleet, and are refused.
    """

    # Not what a reviewer reads into ``selector: {}`` in a pull request. The planner also treats an
    # empty selector as matching no robot (planning/selection.py), should one get past the model.

    families: list[SafeName] = Field(default_factory=list)
    sites: list[SafeName] = Field(default_factory=list)
    models: list[SafeName] = Field(default_factory=list)
    hardware_revision: RevisionRange | None = None
    labels: dict[SafeName, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_a_criterion(self) -> Self:
        if self.is_empty():
            raise ValueError(
                "an empty selector would match every robot in the fleet; name at least one of "
                "families, sites, models, labels or a hardware_revision bound (min or max), "
                "or list the robots under 'devices'"
            )
        return self

    def is_empty(self) -> bool:
        """True when no criterion is given: such a selector must match no robot, never all."""
        bounds = self.hardware_revision
        return not (
            self.families
            or self.sites
            or self.models
            or self.labels
            or (bounds is not None and (bounds.min is not None or bounds.max is not None))
        )


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
