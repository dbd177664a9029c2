"""``fleet.yaml`` (kind Fleet): the commit policy and fleet-wide defaults.

Which keys the fleet trusts (controller, release signers, approvers, root keys) and how many
approvals each stage needs live in the signed trust root (``trust/root/<N>.yaml``,
:mod:`fleetcd.models.trustroot`), the one source of truth robots and controller share. The key and
threshold types are defined here and used there.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, ConfigDict, Field, model_validator

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


MOVED_TO_TRUST_ROOT = ("release_signers", "approvers", "controller")
_MOVED = "moved to the signed trust root trust/root/<N>.yaml (docs/signing-and-approval.md)"


class Trust(FrozenModel):
    """The controller's own policy on main's commits (robots never see it)."""

    model_config = ConfigDict(
        json_schema_extra={"x-fleetcd-moved": dict.fromkeys(MOVED_TO_TRUST_ROOT, _MOVED)}
    )

    commits: CommitPolicy = Field(default_factory=CommitPolicy)

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: object) -> object:
        moved = [k for k in MOVED_TO_TRUST_ROOT if isinstance(data, dict) and k in data]
        if moved:
            raise ValueError(f"{', '.join(moved)} {_MOVED}; remove them from fleet.yaml")
        return data


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
    poll_seconds: int = Field(default=60, ge=5, le=86400)  # the agent.yaml `fleetcd robot add` writes
    # How often an idle robot reports anyway (agent.yaml poll.heartbeat_seconds, written by `fleetcd
    # robot add`): status pushes are the git server's main cost, so size it to the fleet
    # (docs/scaling.md, "Capacity"). A robot that has something new to say reports at once.
    heartbeat_seconds: int = Field(default=300, ge=10, le=86400)
    bundle_expiry_seconds: int = Field(default=7 * 86400, ge=300, le=90 * 86400)
    device_timeout_seconds: int = Field(default=3600, ge=60, le=30 * 86400)
    offline_after_seconds: int = Field(default=900, ge=30, le=30 * 86400)
    download_rate_per_minute: int | None = Field(default=None, ge=1, le=100_000)

    @model_validator(mode="after")
    def _heartbeat_within_offline_after(self) -> Self:
        # An idle robot reports at its first poll after a heartbeat is due: with offline_after at or
        # below that, every quiet robot would show offline between two heartbeats. Checked when the
        # heartbeat is set here; fleets that leave it out keep the agent's default as before.
        quiet = self.heartbeat_seconds + self.poll_seconds
        if "heartbeat_seconds" in self.model_fields_set and self.offline_after_seconds <= quiet:
            raise ValueError(
                f"offline_after_seconds ({self.offline_after_seconds}) must be above heartbeat_seconds + "
                f"poll_seconds ({self.heartbeat_seconds} + {self.poll_seconds}): an idle robot reports "
                "only that often, so it would show offline between heartbeats"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _watch_seconds_was_removed(cls, data: object) -> object:
        if isinstance(data, dict) and "watch_seconds" in data:
            raise ValueError(
                "defaults.watch_seconds was removed: nothing acted on it; each release's "
                "health.watch_seconds (default 30) is its watch window — delete the line"
            )
        return data


class Adapter(FrozenModel):
    """An installed adapter that declares support for a reserved artifact kind."""

    name: SafeName
    artifact_kinds: list[Literal["mcu_firmware", "full_image_ab"]] = Field(min_length=1)


# What a webhook may subscribe to: the audit event kinds the controller announces (AuditKind in
# controller/audit/events.py, all but notify_dropped, which is never sent), the rollout_* ones also
# without their prefix. A name outside the list would subscribe to nothing, silently: refused.
# tests/test_validate_webhooks.py keeps this list and AuditKind equal.
WebhookEvent = Literal[
    "rollout_created",
    "created",
    "wave_started",
    "wave_passed",
    "wave_failed",
    "rollout_halted",
    "halted",
    "rollout_paused",
    "paused",
    "rollout_resumed",
    "resumed",
    "rollout_aborted",
    "aborted",
    "rollout_completed",
    "completed",
    "device_report",
    "rollback",
    "stalled",
    "history_rewritten",
    "desired_root_ignored",
    "withdrawal_ignored",
    "status_shard_unreachable",
]


def _check_webhook_url(value: str) -> str:
    """A URL the controller can POST to: a host, a port in range, no spaces or control characters.
    The message never repeats the URL: it often carries a token."""
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError("the webhook URL holds a space or a control character")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parsed for its ValueError: a port out of range or not a number
    except ValueError as exc:
        raise ValueError(f"the webhook URL does not parse: {exc}") from None
    if not parts.hostname:
        raise ValueError("the webhook URL names no host")
    return value


WebhookUrl = Annotated[str, Field(pattern=r"^https?://", max_length=2048), AfterValidator(_check_webhook_url)]


class Webhook(FrozenModel):
    url: WebhookUrl
    events: list[WebhookEvent] = Field(default_factory=list)


class Fleet(Document):
    model_config = ConfigDict(json_schema_extra={"x-fleetcd-moved": {"approvals": _MOVED}})

    kind: Literal["Fleet"]
    name: SafeName
    description: str = Field(default="", max_length=2000)  # shown under STATUS.md's title
    trust: Trust = Field(default_factory=Trust)
    defaults: Defaults = Field(default_factory=Defaults)
    adapters: list[Adapter] = Field(default_factory=list)
    webhooks: list[Webhook] = Field(default_factory=list)

    def supported_reserved_kinds(self) -> set[str]:
        return {kind for adapter in self.adapters for kind in adapter.artifact_kinds}
