"""Per-robot desired state on the wire: the bundle, the signed root, and the controller's builder.

The controller builds one :class:`Bundle` per robot each reconcile and, in step 6 (write),
:func:`build_signed_bundles` puts (device, bundle digest) of every robot whose desired state moves
into one Merkle tree (``fleetcd.desired.merkle``) and signs ONE :class:`SignedRoot`. Each of those
robots receives its own bundle, the root with its signature, and its :class:`InclusionProof`; the
others keep the commit they hold, at a lower serial. The agent checks all of it with
``fleetcd.desired.verify`` before anything is parsed further.

Everything here is hashed or signed as :func:`canonical_bytes` — JSON with sorted keys, no
whitespace, UTF-8 — and nothing else, so controller and agent agree on the bytes to the bit.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, StringConstraints, model_validator

from fleetcd.compat import Self
from fleetcd.desired.configset import MAX_CONFIG_FILE_BYTES, MAX_CONFIG_LAYERS
from fleetcd.desired.merkle import MAX_LEAVES, InclusionProof, build_tree, leaf_data
from fleetcd.errors import InvalidContent
from fleetcd.models.base import FrozenModel, SafeName, SemVer, Sha256, Stage
from fleetcd.models.trustroot import MAX_TRUST_VERSION
from fleetcd.reasons import Reason

__all__ = [
    "Bundle",
    "BundleConfigFile",
    "BundleDeployment",
    "InclusionProof",
    "SignedRoot",
    "build_signed_bundles",
    "canonical_bytes",
]

BUNDLE_FORMAT = "fleetcd.dev/bundle/v1"

# File names in a robot's desired-state commit: the controller writes them, the agent reads them.
BUNDLE_FILE = "bundle.json"  # with trust.json (fleetcd.desired.chain) beside them
ROOT_FILE = "root.json"
ROOT_SIGNATURE_FILE = "root.json.asc"
PROOF_FILE = "proof.json"

# Size caps the agent enforces before parsing anything; the builder refuses to exceed them.
MAX_BUNDLE_BYTES = 4 * 1024 * 1024
MAX_ROOT_BYTES = 16 * 1024
MAX_PROOF_BYTES = 16 * 1024
MAX_ROOT_SIGNATURE_BYTES = 64 * 1024

MAX_DEPLOYMENTS = 256  # per robot: one per app, far above any real robot
MAX_SIGNATURE_FILES = 64  # .asc files per release or rollout; thresholds are at most 16

# Every number on the wire is bounded (strict ints: no floats, no bools). Serials and counts stay
# within what any JSON reader holds exactly (2**53), so a planted 10**30 or a 4,300-digit serial
# is a validation error, never a serial to continue from or a crash converting it back to text.
MAX_SERIAL = 2**53
MAX_GENERATION = 2**53
# Config values are free-form JSON held to the release's schema; their integers must still fit a
# 64-bit field (int64 or uint64) on the robot, and floats must be finite.
MIN_CONFIG_INT = -(2**63)
MAX_CONFIG_INT = 2**64 - 1

RepoPath = Annotated[str, StringConstraints(min_length=1, max_length=512)]
ArmoredText = Annotated[str, StringConstraints(max_length=64 * 1024)]
Serial = Annotated[int, Field(strict=True, ge=1, le=MAX_SERIAL)]


def _bounded_numbers(value: Any, *, where: str = "config") -> Any:
    """``value`` unchanged when every number in it is a finite float or an int within 64 bits."""
    # ``where`` is keyword-only: pydantic < 2.8 counts a second positional parameter, default or not,
    # as the validator's ValidationInfo and would pass that in its place.
    stack = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        if isinstance(item, int):
            if not MIN_CONFIG_INT <= item <= MAX_CONFIG_INT:
                raise ValueError(f"{at}: integer out of range ({MIN_CONFIG_INT}..{MAX_CONFIG_INT})")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(f"{at}: {item!r} is not a finite number")
        elif isinstance(item, dict):
            stack.extend((v, f"{at}.{k}") for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(item))
    return value


ConfigValues = Annotated[dict[str, Any], AfterValidator(_bounded_numbers)]


def canonical_bytes(model: BaseModel) -> bytes:
    """The one serialisation that is hashed and signed: sorted keys, no whitespace, UTF-8."""
    data = model.model_dump(mode="json", by_alias=True)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


# base64 of a config file at its size cap: 4 characters per 3 bytes, rounded up
MAX_CONFIG_B64_CHARS = 4 * ((MAX_CONFIG_FILE_BYTES + 2) // 3)


class BundleConfigFile(FrozenModel):
    """One config instance that applies to the robot: exact bytes and their place in the app's set."""

    path: RepoPath  # 'configs/<app>/<default|cohort-NAME|device-ID>.yaml'
    b64: str = Field(max_length=MAX_CONFIG_B64_CHARS)  # exact file bytes, base64
    proof: InclusionProof  # of (path, sha256) in the tree whose root the approvals name


class BundleDeployment(FrozenModel):
    """One app's desired state on one robot, with every byte the robot needs to re-check the trust."""

    deployment_id: SafeName  # the controller's deterministic id
    rollout: SafeName
    generation: int = Field(strict=True, ge=0, le=MAX_GENERATION)
    app: SafeName
    version: SemVer
    action: Literal["deploy", "stage", "rollback"]
    release_path: RepoPath  # 'releases/<app>/<version>.yaml'
    release_b64: str  # exact release file bytes, base64
    release_signatures: dict[RepoPath, ArmoredText] = Field(max_length=MAX_SIGNATURE_FILES)
    rollout_path: RepoPath  # 'rollouts/<name>.yaml'
    rollout_b64: str  # exact rollout file bytes, base64
    approvals: dict[RepoPath, ArmoredText] = Field(max_length=MAX_SIGNATURE_FILES)
    stage: Stage
    approvals_required: int = Field(strict=True, ge=0, le=16)
    config: ConfigValues | None = None  # merged values for this robot; the robot merges them again
    # The app's config set the approvals cover (fleetcd.desired.configset): Merkle root and number
    # of files, and the files that apply to this robot in precedence order (default, cohorts by
    # name, device), from which the robot recomputes ``config`` itself.
    config_root: Sha256
    config_count: int = Field(strict=True, ge=0, le=MAX_LEAVES)
    config_files: list[BundleConfigFile] = Field(default_factory=list, max_length=MAX_CONFIG_LAYERS)
    not_before: AwareDatetime | None = None


class Bundle(FrozenModel):
    """Everything one robot should run, as of one serial."""

    format: Literal["fleetcd.dev/bundle/v1"]
    device: SafeName
    serial: Serial
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    # The trust-root version (trust/root/<N>.yaml) whose keys vouch for this bundle: the robot must
    # have walked its chain to exactly this version (trust.json in the same commit). A new version
    # changes every robot's bundle, so every robot learns it.
    trust_version: int = Field(strict=True, ge=1, le=MAX_TRUST_VERSION)
    deployments: list[BundleDeployment] = Field(max_length=MAX_DEPLOYMENTS)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check_window(self.issued_at, self.expires_at)
        apps = [d.app for d in self.deployments]
        if len(apps) != len(set(apps)):
            raise ValueError("a robot gets at most one deployment per app")
        ids = [d.deployment_id for d in self.deployments]
        if len(ids) != len(set(ids)):
            raise ValueError("deployment ids must be unique")
        return self


class SignedRoot(FrozenModel):
    """The one document the controller signs per reconcile: a Merkle root over the bundles it writes."""

    format: Literal["fleetcd.dev/root/v1"]
    serial: Serial  # above every serial signed before (robots that keep theirs hold a lower one)
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    merkle_root: Sha256
    leaves: int = Field(strict=True, ge=0, le=MAX_LEAVES)
    fleet: SafeName

    @model_validator(mode="after")
    def _window(self) -> Self:
        _check_window(self.issued_at, self.expires_at)
        return self


def _check_window(issued_at: datetime, expires_at: datetime) -> None:
    if expires_at <= issued_at:
        raise ValueError(
            f"expires_at {expires_at.isoformat()} is not after issued_at {issued_at.isoformat()}"
        )


def build_signed_bundles(
    fleet: str,
    bundles: Mapping[str, Bundle],
    serial: int,
    issued_at: datetime,
    expires_at: datetime,
    sign: Callable[[bytes], bytes],
    encoded: Mapping[str, bytes] | None = None,
) -> tuple[bytes, bytes, dict[str, tuple[bytes, bytes]]]:
    """(root bytes, root signature, {device: (bundle bytes, proof bytes)}), with ONE call to ``sign``.

    Leaves are ordered by device id, so the same bundles always give the same root. A bundle that
    names another device or serial is a controller bug and raises ValueError; one over the robot's
    size cap would be refused by the robot, so it stalls the reconcile here instead. ``encoded``:
    :func:`canonical_bytes` of the bundles the caller encoded already (the controller, which
    hashed them for change detection), taken as they are.
    """
    given = encoded or {}
    devices = sorted(bundles)
    encoded_now: dict[str, bytes] = {}
    for device in devices:
        bundle = bundles[device]
        if bundle.device != device or bundle.serial != serial:
            raise ValueError(
                f"bundle keyed {device!r} names device {bundle.device!r}, serial {bundle.serial}"
            )
        encoded_now[device] = given[device] if device in given else canonical_bytes(bundle)
        if len(encoded_now[device]) > MAX_BUNDLE_BYTES:
            message = f"bundle is {len(encoded_now[device])} bytes; robots accept at most {MAX_BUNDLE_BYTES}"
            raise InvalidContent.at(f"{BUNDLE_FILE} of {device}", message, reason=Reason.TOO_LARGE)
    tree = build_tree([leaf_data(d, hashlib.sha256(encoded_now[d]).hexdigest()) for d in devices])
    root = SignedRoot(
        format="fleetcd.dev/root/v1",
        serial=serial,
        issued_at=issued_at,
        expires_at=expires_at,
        merkle_root=tree.root,
        leaves=tree.size,
        fleet=fleet,
    )
    root_bytes = canonical_bytes(root)
    signature = sign(root_bytes)
    per_device = {d: (encoded_now[d], tree.proof_bytes(i)) for i, d in enumerate(devices)}
    return root_bytes, signature, per_device
