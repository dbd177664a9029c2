"""``trust.json`` in a robot's desired-state commit: the trust-root chain and the public keys it names.

A robot pins only the root keys of one trust-root version (``agent.yaml`` ``trust.root``). Every
desired-state commit carries, in this one file, every version of ``trust/root/<N>.yaml`` on main
with its detached signatures, plus main's ``keys/*.asc``; the robot walks the chain from the version
it holds (:mod:`fleetcd.trust.rootchain`) and takes the controller, release-signer and approver keys
from the newest version that verified. Nothing in here is trusted for being here: a version counts
only through its root-key signatures, and a public key only counts for a fingerprint a verified
version lists (an OpenPGP fingerprint is a hash of the key, so a planted key cannot pose as another).

The controller builds the file once per reconcile (:func:`build_trust_file`), the same bytes for
every robot (git stores them once); the robot parses it within bounds (:func:`parse_trust_file`)
before anything is verified. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, StringConstraints, ValidationError

from fleetcd.desired.bundle import canonical_bytes
from fleetcd.errors import InvalidContent
from fleetcd.models.base import FrozenModel
from fleetcd.models.trustroot import MAX_TRUST_VERSION
from fleetcd.reasons import Reason
from fleetcd.trust.rootchain import (
    MAX_CHAIN_VERSIONS,
    MAX_ROOT_DOCUMENT_BYTES,
    MAX_ROOT_SIGNATURES,
    RootVersion,
)

if TYPE_CHECKING:  # fleetspec imports fleetcd.desired (config sets): a runtime import would cycle
    from fleetcd.loading.fleetspec import FleetSpec

TRUST_FILE = "trust.json"
TRUST_FORMAT: Literal["fleetcd.dev/trust-chain/v1"] = "fleetcd.dev/trust-chain/v1"
MAX_TRUST_BYTES = 1024 * 1024  # 64 versions of a few KiB plus a fleet's public keys
MAX_KEY_FILES = 256
MAX_KEY_BYTES = 64 * 1024

KeyPath = Annotated[
    str, StringConstraints(pattern=r"^keys/[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*\.asc$", max_length=128)
]
SignaturePath = Annotated[
    str, StringConstraints(pattern=r"^trust/root/[1-9][0-9]{0,6}\.yaml\.d/[0-9A-F]{40}\.asc$", max_length=128)
]
Armored = Annotated[str, StringConstraints(max_length=MAX_KEY_BYTES)]
Base64Document = Annotated[str, StringConstraints(max_length=MAX_ROOT_DOCUMENT_BYTES * 4 // 3 + 4)]


class ChainVersion(FrozenModel):
    version: int = Field(strict=True, ge=1, le=MAX_TRUST_VERSION)
    document_b64: Base64Document  # the exact bytes of trust/root/<version>.yaml
    signatures: dict[SignaturePath, Armored] = Field(max_length=MAX_ROOT_SIGNATURES)


class TrustFile(FrozenModel):
    format: Literal["fleetcd.dev/trust-chain/v1"]
    versions: list[ChainVersion] = Field(min_length=1, max_length=MAX_CHAIN_VERSIONS)
    keys: dict[KeyPath, Armored] = Field(max_length=MAX_KEY_FILES)


@dataclass(frozen=True)
class TrustChain:
    """What ``trust.json`` holds, decoded: the versions (ascending) and the public key files."""

    versions: tuple[RootVersion, ...]
    keys: Mapping[str, bytes]

    @property
    def newest(self) -> int:
        return self.versions[-1].version


class TrustFileRejected(InvalidContent):
    def __init__(self, reason: Reason, message: str) -> None:
        self.reason = reason
        super().__init__(InvalidContent.at(TRUST_FILE, message, reason=reason).diagnostics)


def trust_file_of(spec: FleetSpec) -> bytes:
    """``trust.json`` of a loaded snapshot: every trust-root version on it and its ``keys/``."""
    versions = [RootVersion(n, e.doc.raw, e.signatures) for n, e in spec.trust_roots.items()]
    return build_trust_file(versions, spec.keys)


def build_trust_file(versions: list[RootVersion], keys: Mapping[str, bytes]) -> bytes:
    """The canonical ``trust.json`` for ``versions`` (any order) and main's ``keys/*.asc``.

    More than robots accept (versions, key files, bytes) is InvalidContent: the reconcile stalls
    rather than send robots something they would refuse.
    """
    try:
        model = _trust_model(versions, keys)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise InvalidContent.at(TRUST_FILE, f"{where}: {first['msg']}", reason=Reason.TOO_LARGE) from None
    raw = canonical_bytes(model)
    if len(raw) > MAX_TRUST_BYTES:
        message = f"{len(raw)} bytes; robots accept at most {MAX_TRUST_BYTES} (fewer keys/ files or versions)"
        raise InvalidContent.at(TRUST_FILE, message, reason=Reason.TOO_LARGE)
    return raw


def _trust_model(versions: list[RootVersion], keys: Mapping[str, bytes]) -> TrustFile:
    return TrustFile(
        format=TRUST_FORMAT,
        versions=[
            ChainVersion(
                version=v.version,
                document_b64=base64.b64encode(v.raw).decode("ascii"),
                signatures={path: data.decode("utf-8") for path, data in sorted(v.signatures.items())},
            )
            for v in sorted(versions, key=lambda v: v.version)
        ],
        keys={path: data.decode("utf-8") for path, data in sorted(keys.items())},
    )


def parse_trust_file(raw: bytes) -> TrustChain:
    """``trust.json`` within its bounds, versions strictly ascending; :class:`TrustFileRejected` if not."""
    if len(raw) > MAX_TRUST_BYTES:
        raise TrustFileRejected(Reason.TOO_LARGE, f"{len(raw)} bytes; at most {MAX_TRUST_BYTES}")
    try:
        model = TrustFile.model_validate_json(raw)
    except (ValidationError, ValueError, RecursionError) as exc:
        first = str(exc).splitlines()[:3]
        raise TrustFileRejected(Reason.BUNDLE_INVALID, "; ".join(first)) from None
    numbers = [v.version for v in model.versions]
    if numbers != sorted(set(numbers)):
        raise TrustFileRejected(Reason.TRUST_ROOT_VERSION, f"versions {numbers} are not strictly ascending")
    versions = []
    for entry in model.versions:
        try:
            document = base64.b64decode(entry.document_b64, validate=True)
        except (binascii.Error, ValueError):
            raise TrustFileRejected(Reason.BUNDLE_INVALID, f"version {entry.version}: not base64") from None
        prefix = f"trust/root/{entry.version}.yaml.d/"
        if any(not path.startswith(prefix) for path in entry.signatures):
            raise TrustFileRejected(
                Reason.BUNDLE_INVALID, f"version {entry.version}: a signature of another version"
            )
        signatures = {path: text.encode("utf-8") for path, text in entry.signatures.items()}
        versions.append(RootVersion(entry.version, document, signatures))
    keys = {path: text.encode("utf-8") for path, text in model.keys.items()}
    return TrustChain(tuple(versions), keys)
