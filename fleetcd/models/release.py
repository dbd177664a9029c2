"""``releases/<app>/<version>.yaml`` (kind Release): an immutable, signed description of one version.

Artifacts, compatibility bounds, pre-flight and migration steps, health gates, rollback policy and
the app's config schema. Once published the file's bytes never change; a fix is a new version.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from fleetcd.compat import Self
from fleetcd.models.base import Document, FrozenModel, SafeName, SemVer, Sha256
from fleetcd.models.cohort import RevisionRange
from fleetcd.models.requirement import MAX_REQUIREMENTS, Requirement

MAX_ARTIFACT_BYTES = 64 * 1024**3  # 64 GiB: a full disk image, well above any app
MAX_ARTIFACTS = 64  # per release
MAX_WATCH_SECONDS = 3600  # the longest health watch window a release may ask for
IMAGE_DIGEST_PATTERN = r"^[a-z0-9][a-z0-9._:/-]*(?::[A-Za-z0-9._-]+)?@sha256:[0-9a-f]{64}$"
URL_PATTERN = r"^(https?|file)://[^\s]+$"


class ContainerImage(FrozenModel):
    """A container image pinned by digest; tags alone are never trusted."""

    kind: Literal["container_image"]
    name: SafeName
    image: str = Field(pattern=IMAGE_DIGEST_PATTERN, max_length=512)
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    ports: dict[str, int] = Field(default_factory=dict)


class _FilePayload(FrozenModel):
    name: SafeName
    url: str = Field(pattern=URL_PATTERN, max_length=2048)
    sha256: Sha256
    size: int = Field(ge=1, le=MAX_ARTIFACT_BYTES)


class AppTarball(_FilePayload):
    """A tar archive unpacked into ``releases/<version>`` and switched by symlink."""

    kind: Literal["app_tarball"]
    command: list[str] | None = Field(default=None, min_length=1)


class ConfigPayload(_FilePayload):
    kind: Literal["config"]
    path: str = Field(min_length=1, max_length=512)


class ModelPayload(_FilePayload):
    kind: Literal["model"]
    path: str = Field(min_length=1, max_length=512)


class McuFirmware(_FilePayload):
    """Reserved: valid only when an adapter in ``fleet.yaml`` declares support."""

    kind: Literal["mcu_firmware"]
    target: SafeName


class FullImageAB(_FilePayload):
    """Reserved: valid only when an adapter in ``fleet.yaml`` declares support."""

    kind: Literal["full_image_ab"]


Artifact = Annotated[
    ContainerImage | AppTarball | ConfigPayload | ModelPayload | McuFirmware | FullImageAB,
    Field(discriminator="kind"),
]
RESERVED_ARTIFACT_KINDS = frozenset({"mcu_firmware", "full_image_ab"})


class Compatibility(FrozenModel):
    """Which robots may run this release; empty lists mean no restriction."""

    families: list[SafeName] = Field(default_factory=list)
    models: list[SafeName] = Field(default_factory=list)
    hardware_revision: RevisionRange | None = None


MAX_STEPS = 32  # pre-flight steps or migrations per release
MAX_ARGV = 256  # items of one command's argv


class Step(FrozenModel):
    """A pre-flight command: argv, no shell, run by the agent before the install (exit 0 goes on)."""

    name: SafeName
    exec: list[str] = Field(min_length=1, max_length=MAX_ARGV)
    timeout_seconds: int = Field(default=60, ge=1, le=3600)


class Migration(Step):
    """A migration: argv, no shell, run once per robot (by name) after the install, before the switch.

    ``rollback`` (argv) undoes it when the deployment that ran it fails or rolls back; without it the
    migration is irreversible: it stays applied (and a run cut short by a crash is run again).
    """

    rollback: list[str] | None = Field(default=None, min_length=1, max_length=MAX_ARGV)


class _ProbeBase(FrozenModel):
    name: SafeName
    timeout_seconds: int = Field(default=5, ge=1, le=300)
    attempts: int = Field(default=3, ge=1, le=10)
    initial_delay_seconds: int = Field(default=0, ge=0, le=300)
    interval_seconds: int = Field(default=5, ge=1, le=300)


class ExecProbe(_ProbeBase):
    """Runs argv directly (no shell); argv[0] must be on the agent's allowlist."""

    type: Literal["exec"]
    argv: list[str] = Field(min_length=1)


class HttpProbe(_ProbeBase):
    type: Literal["http"]
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    expect_status: int = Field(default=200, ge=100, le=599)


class FileProbe(_ProbeBase):
    type: Literal["file"]
    path: str = Field(min_length=1, max_length=1024)
    max_age_seconds: int | None = Field(default=None, ge=1)


Probe = Annotated[ExecProbe | HttpProbe | FileProbe, Field(discriminator="type")]


class Health(FrozenModel):
    """After the switch the app must stay up and every probe pass for ``watch_seconds``."""

    watch_seconds: int = Field(default=30, ge=1, le=MAX_WATCH_SECONDS)
    probes: list[Probe] = Field(default_factory=list)


class RollbackPolicy(FrozenModel):
    """Where a failed install goes back to, and what must hold once it is there."""

    target: Literal["previous"] | SemVer = "previous"
    automatic: bool = True
    checks: list[Probe] = Field(default_factory=list)


class ConfigSchema(FrozenModel):
    """The JSON Schema every robot's merged config values must satisfy, and where the app reads it."""

    path: str = Field(min_length=1, max_length=512)
    format: Literal["yaml", "json"] = "yaml"
    json_schema: dict[str, Any] = Field(alias="schema")


class Release(Document):
    kind: Literal["Release"]
    app: SafeName
    version: SemVer
    notes: str = Field(default="", max_length=20_000)
    artifacts: list[Artifact] = Field(min_length=1, max_length=MAX_ARTIFACTS)
    compatibility: Compatibility = Field(default_factory=Compatibility)
    preflight: list[Step] = Field(default_factory=list, max_length=MAX_STEPS)
    migrations: list[Migration] = Field(default_factory=list, max_length=MAX_STEPS)
    gates: list[SafeName] = Field(default_factory=list)
    health: Health = Field(default_factory=Health)
    rollback: RollbackPolicy = Field(default_factory=RollbackPolicy)
    config: ConfigSchema | None = None
    requires: list[Requirement] = Field(default_factory=list, max_length=MAX_REQUIREMENTS)

    @model_validator(mode="after")
    def _unique_artifact_names(self) -> Self:
        names = [a.name for a in self.artifacts]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"artifact names must be unique, repeated: {', '.join(dupes)}")
        steps = [m.name for m in self.migrations]
        repeated = sorted({n for n in steps if steps.count(n) > 1})
        if repeated:
            raise ValueError(
                "migrations: names must be unique (a robot applies each once), repeated: "
                + ", ".join(repeated)
            )
        return self

    @model_validator(mode="after")
    def _requires_other_apps_once(self) -> Self:
        apps = [r.app for r in self.requires]
        if self.app in apps:
            raise ValueError(f"requires: a release of {self.app!r} cannot require its own app")
        dupes = sorted({a for a in apps if apps.count(a) > 1})
        if dupes:
            raise ValueError(f"requires: each app once (combine the bounds), repeated: {', '.join(dupes)}")
        return self
