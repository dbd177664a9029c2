"""``trust/root/<N>.yaml`` (kind TrustRoot): version N of the fleet's trust list, signed by root keys.

The *trust root* (not to be confused with the per-reconcile Merkle root of desired state,
:class:`fleetcd.desired.SignedRoot`) is the one place that says which keys the fleet trusts for
what: the controller's key(s), the release signers and their threshold, the approvers and how many
approvals each stage needs, and the root keys that may sign the next version. It follows TUF's
root rotation: version N+1 counts only when a threshold of version N's root keys *and* a threshold
of its own root keys signed its exact bytes (``trust/root/<N+1>.yaml.d/<FINGERPRINT>.asc``);
versions grow by exactly one. Robots pin only the root keys of the version they were provisioned
with (``agent.yaml`` ``trust.root``) and walk the chain from there (:mod:`fleetcd.trust.rootchain`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from fleetcd.compat import Self
from fleetcd.models.base import Document, FrozenModel, SafeName
from fleetcd.models.fleet import Approvals, KeyRef, SignerSet

MAX_TRUST_VERSION = 1_000_000  # one rotation a day for 2,700 years; the chain cap comes first
MAX_ROOT_KEYS = 16
MAX_THRESHOLD = 16


class RootKeys(FrozenModel):
    """The keys that sign trust-root versions: ``threshold`` distinct ones of ``keys``."""

    threshold: int = Field(default=1, ge=1, le=MAX_THRESHOLD)
    keys: list[KeyRef] = Field(min_length=1, max_length=MAX_ROOT_KEYS)

    @model_validator(mode="after")
    def _threshold_reachable(self) -> Self:
        distinct = len({k.fingerprint for k in self.keys})
        if self.threshold > distinct:
            raise ValueError(f"threshold {self.threshold} exceeds the {distinct} listed root keys")
        return self

    @property
    def fingerprints(self) -> frozenset[str]:
        return frozenset(k.fingerprint for k in self.keys)


class TrustRoot(Document):
    """One version of the fleet's trust list; see the module docstring."""

    kind: Literal["TrustRoot"]
    fleet: SafeName
    version: int = Field(ge=1, le=MAX_TRUST_VERSION)
    # After this instant the version is stale: the controller stalls, robots keep running what they
    # run and refuse new installs until a newer version arrives (docs/signing-and-approval.md).
    expires: Annotated[datetime, Field(strict=False)]
    root: RootKeys
    controller: list[KeyRef] = Field(min_length=1, max_length=16)
    release_signers: SignerSet
    approvers: list[KeyRef] = Field(default_factory=list, max_length=64)
    approvals: Approvals = Field(default_factory=Approvals)

    @model_validator(mode="after")
    def _aware(self) -> Self:
        if self.expires.utcoffset() is None:
            raise ValueError("expires needs a time zone, e.g. '2027-06-01T00:00:00Z'")
        return self

    @property
    def controller_fingerprints(self) -> frozenset[str]:
        return frozenset(k.fingerprint for k in self.controller)

    def fingerprints(self) -> frozenset[str]:
        """Every key this version names, in any role."""
        refs = [*self.root.keys, *self.controller, *self.release_signers.keys, *self.approvers]
        return frozenset(k.fingerprint for k in refs)


__all__ = ["MAX_TRUST_VERSION", "RootKeys", "TrustRoot"]
