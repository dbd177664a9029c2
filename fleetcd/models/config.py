"""``configs/<app>/<scope>.yaml`` (kind ConfigInstance): config values for one app at one scope.

Precedence when merging for a robot: device > cohort > default (deep merge of mappings; lists
and scalars replace). File names: ``default.yaml``, ``cohort-<name>.yaml``, ``device-<id>.yaml``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from fleetcd.compat import Self
from fleetcd.models.base import Document, SafeName


class ConfigInstance(Document):
    kind: Literal["ConfigInstance"]
    app: SafeName
    scope: Literal["default", "cohort", "device"]
    target: SafeName | None = None
    values: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _target_matches_scope(self) -> Self:
        if self.scope == "default" and self.target is not None:
            raise ValueError("scope 'default' takes no 'target'")
        if self.scope != "default" and self.target is None:
            raise ValueError(f"scope {self.scope!r} needs a 'target' ({self.scope} name)")
        return self

    @property
    def file_stem(self) -> str:
        return "default" if self.scope == "default" else f"{self.scope}-{self.target}"

    @property
    def precedence(self) -> int:
        return {"default": 0, "cohort": 1, "device": 2}[self.scope]
