"""``fleet.yaml`` (kind Fleet): trust anchors, approvals per stage, fleet-wide defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fleetcd.compat import Self
from fleetcd.models.base import Document, Fingerprint, FrozenModel, SafeName, Stage
from fleetcd.models.rollout import Strategy


class KeyRef(FrozenModel):
    """A trusted OpenPGP key: its primary-key fingerprint (40 hex, upper case) and a human name."""

    fingerprint: Fingerprint
    name: str = Field(min_length=1, max_length=200)


class SignerSet(FrozenModel):
    """Release signers: ``threshold`` distinct keys of ``keys`` must sign each release file."""

    threshold: int = Field(default=1, ge=1, le=16)
    keys: list[KeyRef] = Field(min_length=1)

    @model_validator(mode="after")
    def _threshold_reachable(self) -> Self:
        if self.threshold > len({k.fingerprint for k in self.keys}):
            raise ValueError(f"threshold {self.threshold} exceeds the {len(self.keys)} listed signer keys")
        return self


class CommitPolicy(FrozenModel):
    """Which commits on main the controller accepts.

    ``off``: any; ``head``: the tip must be signed by a key in ``trusted``; ``strict``: every
    commit since the last processed one. List a forge's merge key in ``trusted`` to accept merges
    made by the forge's web UI.
    """

    mode: Literal["off", "head", "strict"] = "off"
    trusted: list[KeyRef] = Field(default_factory=list)


class Trust(FrozenModel):
    release_signers: SignerSet
    approvers: list[KeyRef] = Field(default_factory=list)
    controller: KeyRef
    commits: CommitPolicy = Field(default_factory=CommitPolicy)


class Approvals(FrozenModel):
    """Distinct approver signatures a rollout needs, by the highest stage it touches."""

    staging: int = Field(default=0, ge=0, le=16)
    canary: int = Field(default=1, ge=0, le=16)
    production: int = Field(default=2, ge=0, le=16)

    def required(self, stage: Stage) -> int:
        return int(getattr(self, stage.value))


class Defaults(FrozenModel):
    """Fleet-wide defaults; units are in the field names."""

    strategy: Strategy | None = None
    watch_seconds: int = Field(default=30, ge=1, le=3600)
    poll_seconds: int = Field(default=60, ge=5, le=86400)
    bundle_expiry_seconds: int = Field(default=7 * 86400, ge=300, le=90 * 86400)
    device_timeout_seconds: int = Field(default=3600, ge=60, le=30 * 86400)
    offline_after_seconds: int = Field(default=900, ge=30, le=30 * 86400)
    download_rate_per_minute: int | None = Field(default=None, ge=1, le=100_000)


class Adapter(FrozenModel):
    """An installed adapter that declares support for a reserved artifact kind."""

    name: SafeName
    artifact_kinds: list[Literal["mcu_firmware", "full_image_ab"]] = Field(min_length=1)


class Webhook(FrozenModel):
    url: str = Field(pattern=r"^https?://", max_length=2048)
    events: list[str] = Field(default_factory=list)


class Fleet(Document):
    kind: Literal["Fleet"]
    name: SafeName
    description: str = ""
    trust: Trust
    approvals: Approvals = Field(default_factory=Approvals)
    defaults: Defaults = Field(default_factory=Defaults)
    adapters: list[Adapter] = Field(default_factory=list)
    webhooks: list[Webhook] = Field(default_factory=list)

    def supported_reserved_kinds(self) -> set[str]:
        return {kind for adapter in self.adapters for kind in adapter.artifact_kinds}
