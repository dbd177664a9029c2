"""``devices/<id>.yaml`` (kind Device): one robot, its hardware, site, time zone and windows."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fleetcd.models.base import Document, FrozenModel, MaintenanceWindow, SafeName, TimeZoneName


class Hardware(FrozenModel):
    model: SafeName
    revision: int = Field(ge=0, le=10_000)


class Device(Document):
    kind: Literal["Device"]
    id: SafeName
    family: SafeName
    hardware: Hardware
    site: SafeName
    timezone: TimeZoneName = "UTC"
    labels: dict[SafeName, str] = Field(default_factory=dict)
    maintenance_windows: list[MaintenanceWindow] = Field(default_factory=list)
    decommissioned: bool = False
