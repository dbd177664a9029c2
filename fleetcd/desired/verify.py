"""The robot's trust chain for its desired state: agent step 2 (verify), shared with tests and tools.

The controller signs once per reconcile (``fleetcd.desired.bundle.build_signed_bundles``);
:func:`verify_bundle` takes a robot's raw bytes and the :class:`TrustAnchors` pinned at
provisioning and returns a :class:`VerifiedBundle` or raises :class:`BundleRejected` naming the
check that failed. Checks run in this order and nothing is parsed before the one above
it passed: size caps; the controller's signature over the exact root bytes; the root; the inclusion
proof of (device, sha256(bundle)); the bundle naming this device and the root's serial; the serial
strictly increasing (rollback attack); expiry (freeze attack, :class:`BundleExpired`); then, per
deployment, release signatures, release and rollout contents, config files (each in the app's
config set, in precedence order, merged again by the robot: :func:`_check_config_files`), approvals
over rollout, release *and* config set, and the merged config against the release's schema.

Clocks: a robot's clock may be reset to 1970. Expiry is judged at ``max(now, time_floor,
root.issued_at)``: the agent passes as ``time_floor`` the latest instant it has trustworthily seen
(its persisted clock high-water mark, at least the last accepted root's ``issued_at``), so turning
the clock back never makes an expired bundle look fresh. A root issued in the future is accepted
(rejecting it would brick a robot with a reset clock) and flagged ``clock_suspect`` for the report.
Pure over the :class:`~fleetcd.trust.policy.Verifier` protocol: no files, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from fleetcd.desired.bundle import (
    BUNDLE_FILE,
    MAX_BUNDLE_BYTES,
    MAX_PROOF_BYTES,
    MAX_ROOT_BYTES,
    MAX_ROOT_SIGNATURE_BYTES,
    PROOF_FILE,
    ROOT_FILE,
    ROOT_SIGNATURE_FILE,
    Bundle,
    BundleDeployment,
    SignedRoot,
    canonical_bytes,
)
from fleetcd.desired.chain import TRUST_FILE, TrustChain
from fleetcd.desired.configset import MAX_CONFIG_FILE_BYTES, included, merge_values, merged_sha256
from fleetcd.desired.merkle import InclusionProof, leaf_data, verify_inclusion
from fleetcd.errors import Diagnostic, InvalidContent, SetupError
from fleetcd.layout import FileKind, classify, release_path, rollout_path
from fleetcd.loading.documents import load_document
from fleetcd.models import ConfigInstance, Release, Rollout, Stage, TrustRoot
from fleetcd.models.base import FINGERPRINT_PATTERN
from fleetcd.models.fleet import KeyRef, SignerSet
from fleetcd.reasons import Reason
from fleetcd.trust.approval import approval_payload
from fleetcd.trust.policy import ThresholdStatus, Verifier, check_approvals, check_release
from fleetcd.trust.rootchain import Pin, TrustChainRejected, TrustedRoot, verify_first, walk

MAX_CLOCK_SKEW = timedelta(minutes=5)  # a root issued further ahead than this marks the clock suspect
MAX_THRESHOLD = 16  # same bound as the trust root's SignerSet

M = TypeVar("M", bound=BaseModel)


class BundleRejected(InvalidContent):
    """The desired state failed a check: keep running the last good state, report, wait for new."""

    def __init__(self, reason: Reason, message: str, *, file: str = BUNDLE_FILE, field: str | None = None):
        self.reason = reason
        super().__init__([Diagnostic(file, None, field, message, reason)])


class BundleExpired(BundleRejected):
    """Authentic but stale (freeze attack or a controller gone quiet): flag stale, keep running."""

    def __init__(self, message: str, *, expires_at: datetime, judged_at: datetime, file: str = ROOT_FILE):
        self.expires_at = expires_at
        self.judged_at = judged_at
        super().__init__(Reason.EXPIRED, message, file=file, field="expires_at")


@dataclass(frozen=True)
class TrustAnchors:
    """Pinned on the robot at provisioning; never taken from the desired state it verifies.

    ``approvals_required`` is the robot's own floor per stage; a stage it does not list gets the
    highest floor it does list, so forgetting a stage never lowers the bar.
    """

    controller: frozenset[str]
    release_signers: frozenset[str]
    release_threshold: int
    approvers: frozenset[str]
    approvals_required: Mapping[Stage, int]
    fleet: str | None = None  # when set, roots of another fleet are refused

    def __post_init__(self) -> None:
        problems = [f for f in self.controller | self.release_signers | self.approvers if not _is_fpr(f)]
        if problems:
            raise SetupError(f"trust anchors: not 40 upper-case hex fingerprints: {sorted(problems)}")
        if not self.controller:
            raise SetupError("trust anchors: no controller key pinned")
        if not 1 <= self.release_threshold <= min(len(self.release_signers), MAX_THRESHOLD):
            raise SetupError(
                f"trust anchors: release_threshold {self.release_threshold} is not reachable with "
                f"{len(self.release_signers)} pinned release signers (1..{MAX_THRESHOLD})"
            )

    @classmethod
    def from_trust_root(cls, root: TrustRoot) -> TrustAnchors:
        """The keys and thresholds a verified trust-root version states (robot and controller alike)."""
        return cls(
            controller=root.controller_fingerprints,
            release_signers=frozenset(k.fingerprint for k in root.release_signers.keys),
            release_threshold=root.release_signers.threshold,
            approvers=frozenset(k.fingerprint for k in root.approvers),
            approvals_required={stage: root.approvals.required(stage) for stage in Stage},
            fleet=root.fleet,
        )

    def approvals_floor(self, stage: Stage) -> int:
        return self.approvals_required.get(stage, max(self.approvals_required.values(), default=0))


@dataclass(frozen=True)
class VerifiedBundle:
    bundle: Bundle
    root: SignedRoot
    bundle_sha256: str
    unchanged: bool = False  # same serial and bytes as the last accepted bundle: nothing to do
    clock_suspect: bool = False  # root issued more than MAX_CLOCK_SKEW ahead of the local clock
    releases: Mapping[str, Release] = field(default_factory=dict)  # deployment_id -> parsed release


def verify_bundle(
    device_id: str,
    bundle_bytes: bytes,
    root_bytes: bytes,
    root_signature: bytes,
    proof_bytes: bytes,
    anchors: TrustAnchors,
    last_serial: int | None,
    now: datetime,
    verifier: Verifier,
    *,
    last_bundle_sha256: str | None = None,
    time_floor: datetime | None = None,
    trust_version: int | None = None,
) -> VerifiedBundle:
    """Verify one robot's desired state; raise :class:`BundleRejected` at the first failed check.

    ``last_bundle_sha256`` (of the last accepted bundle) lets an equal serial with other bytes be
    caught as a reused serial; without it an equal serial is simply reported ``unchanged``.
    ``trust_version`` is the trust-root version ``anchors`` come from (:func:`verify_trust`): the
    bundle must name exactly it.
    """
    if now.utcoffset() is None or (time_floor is not None and time_floor.utcoffset() is None):
        raise ValueError("now and time_floor must be timezone-aware")
    _check_sizes(bundle_bytes, root_bytes, root_signature, proof_bytes)

    root = verify_root(root_bytes, root_signature, anchors.controller, verifier, fleet=anchors.fleet)

    proof = _parse(InclusionProof, proof_bytes, PROOF_FILE)
    digest = hashlib.sha256(bundle_bytes).hexdigest()
    leaf = leaf_data(device_id, digest)
    if proof.leaves != root.leaves or not verify_inclusion(leaf, proof, root.merkle_root):
        message = (
            f"bundle sha256 {digest} for device {device_id!r} is not in the root of serial {root.serial}"
        )
        raise BundleRejected(Reason.NOT_INCLUDED, message, file=PROOF_FILE)

    bundle = _parse(Bundle, bundle_bytes, BUNDLE_FILE)
    if bundle.device != device_id:
        message = f"bundle is for device {bundle.device!r}, not {device_id!r}"
        raise BundleRejected(Reason.WRONG_DEVICE, message, field="device")
    if bundle.serial != root.serial:
        message = f"bundle serial {bundle.serial} differs from root serial {root.serial}"
        raise BundleRejected(Reason.SERIAL_MISMATCH, message, field="serial")
    if trust_version is not None and bundle.trust_version != trust_version:
        older = bundle.trust_version < trust_version
        message = f"bundle names trust root version {bundle.trust_version}, " + (
            f"older than version {trust_version} this robot holds (replay)"
            if older
            else f"but {TRUST_FILE} reaches version {trust_version}"
        )
        reason = Reason.TRUST_ROOT_ROLLBACK if older else Reason.TRUST_ROOT_VERSION
        raise BundleRejected(reason, message, field="trust_version")

    unchanged = _check_serial(root.serial, digest, last_serial, last_bundle_sha256)
    judged_at = max(now, time_floor or now, root.issued_at)
    expires_at = min(root.expires_at, bundle.expires_at)
    if judged_at >= expires_at:
        message = (
            f"serial {root.serial} expired at {expires_at.isoformat()} (judged at {judged_at.isoformat()})"
        )
        raise BundleExpired(message, expires_at=expires_at, judged_at=judged_at)

    releases = {
        d.deployment_id: _check_deployment(i, d, device_id, anchors, verifier)
        for i, d in enumerate(bundle.deployments)
    }
    return VerifiedBundle(
        bundle=bundle,
        root=root,
        bundle_sha256=digest,
        unchanged=unchanged,
        clock_suspect=root.issued_at > now + MAX_CLOCK_SKEW,
        releases=releases,
    )


def verify_trust(chain: TrustChain, pin: Pin, held: TrustedRoot | None, verifier: Verifier) -> TrustedRoot:
    """The newest trust-root version reachable over ``chain`` from ``held`` (the version the robot
    holds), or on first boot from ``pin`` (the root keys in ``agent.yaml``).

    A chain that does not reach back to where the robot stands, or a version that fails its
    root-key signatures, is :class:`BundleRejected` naming ``trust/root/<N>.yaml``; the robot keeps
    what it holds. Expiry is judged by the caller, who knows the clock.
    """
    try:
        if held is None:
            first = next((v for v in chain.versions if v.version == pin.version), None)
            if first is None:
                message = f"holds no version {pin.version}, the version this robot was provisioned with"
                raise BundleRejected(Reason.TRUST_ROOT_VERSION, message, file=TRUST_FILE, field="versions")
            held = verify_first(pin, first, verifier)
        elif chain.newest < held.version:
            message = (
                f"reaches version {chain.newest}, older than version {held.version} this robot holds (replay)"
            )
            raise BundleRejected(Reason.TRUST_ROOT_ROLLBACK, message, file=TRUST_FILE, field="versions")
        return walk(held, chain.versions, verifier)
    except TrustChainRejected as exc:
        first_problem = exc.diagnostics[0]
        message = f"{first_problem.file}: {first_problem.message}"
        raise BundleRejected(exc.reason, message, file=TRUST_FILE, field=first_problem.field) from None


def verify_root(
    root_bytes: bytes,
    root_signature: bytes,
    controller: frozenset[str],
    verifier: Verifier,
    *,
    fleet: str | None = None,
) -> SignedRoot:
    """The signed root, once its signature verifies by one of ``controller``'s keys and its bytes
    parse within bounds (canonical JSON, serial 1..2**53); else :class:`BundleRejected`.

    The robot runs it as the first step of :func:`verify_bundle`; the controller runs it on a root
    it finds on a robot's ref that its own state branch does not vouch for.
    """
    _check_cap(ROOT_FILE, root_bytes, MAX_ROOT_BYTES)
    _check_cap(ROOT_SIGNATURE_FILE, root_signature, MAX_ROOT_SIGNATURE_BYTES)
    signed = verifier.verify_detached(root_bytes, root_signature)
    if not signed.valid or signed.fingerprint not in controller:
        why = (
            signed.detail
            if not signed.valid
            else f"made by {signed.fingerprint}, not a pinned controller key"
        )
        raise BundleRejected(
            Reason.ROOT_SIGNATURE_INVALID, f"root signature: {why}", file=ROOT_SIGNATURE_FILE
        )
    root = _parse(SignedRoot, root_bytes, ROOT_FILE)
    if fleet is not None and root.fleet != fleet:
        message = f"root is for fleet {root.fleet!r}, this robot belongs to {fleet!r}"
        raise BundleRejected(Reason.WRONG_FLEET, message, file=ROOT_FILE, field="fleet")
    return root


def _check_sizes(bundle_bytes: bytes, root_bytes: bytes, root_signature: bytes, proof_bytes: bytes) -> None:
    for name, data, cap in (
        (BUNDLE_FILE, bundle_bytes, MAX_BUNDLE_BYTES),
        (ROOT_FILE, root_bytes, MAX_ROOT_BYTES),
        (ROOT_SIGNATURE_FILE, root_signature, MAX_ROOT_SIGNATURE_BYTES),
        (PROOF_FILE, proof_bytes, MAX_PROOF_BYTES),
    ):
        _check_cap(name, data, cap)


def _check_cap(name: str, data: bytes, cap: int) -> None:
    if len(data) > cap:
        raise BundleRejected(Reason.TOO_LARGE, f"{len(data)} bytes; at most {cap}", file=name)


def _parse(model_type: type[M], raw: bytes, file: str) -> M:
    """Parse strict JSON and insist on the canonical encoding: one document, one byte string."""
    try:
        model = model_type.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise BundleRejected(Reason.BUNDLE_INVALID, problems, file=file) from None
    except (ValueError, RecursionError) as exc:
        # Older pydantic-core hands a number of 4,301+ digits to int(), whose digit limit raises
        # a plain ValueError: still bad content, never a traceback.
        raise BundleRejected(Reason.BUNDLE_INVALID, f"unreadable JSON: {_cut(str(exc))}", file=file) from None
    try:
        canonical = canonical_bytes(model)
    except ValueError as exc:  # a number that cannot be written back (over the digit limit)
        raise BundleRejected(Reason.BUNDLE_INVALID, f"unreadable JSON: {_cut(str(exc))}", file=file) from None
    if canonical != raw:
        raise BundleRejected(
            Reason.BUNDLE_INVALID, "not in canonical form (sorted keys, no whitespace)", file=file
        )
    return model


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def _check_serial(serial: int, digest: str, last_serial: int | None, last_sha256: str | None) -> bool:
    """True when this is the bundle already accepted; raise on a rollback or a reused serial."""
    if last_serial is None or serial > last_serial:
        return False
    if serial < last_serial:
        message = f"serial {serial} is older than the accepted serial {last_serial} (rollback attack)"
        raise BundleRejected(Reason.SERIAL_ROLLBACK, message, file=ROOT_FILE, field="serial")
    if last_sha256 is not None and last_sha256 != digest:
        message = f"serial {serial} was already accepted with other bundle bytes (sha256 {last_sha256})"
        raise BundleRejected(Reason.SERIAL_REUSED, message, file=ROOT_FILE, field="serial")
    return True


def _check_deployment(
    index: int, d: BundleDeployment, device_id: str, anchors: TrustAnchors, verifier: Verifier
) -> Release:
    """Release signatures, release and rollout contents, config files, approvals, config schema."""
    at = f"deployments[{index}]"
    if d.release_path != release_path(d.app, d.version):
        message = f"{d.release_path} is not where {d.app} {d.version} lives"
        raise BundleRejected(Reason.RELEASE_MISMATCH, message, field=f"{at}.release_path")
    if d.rollout_path != rollout_path(d.rollout):
        message = f"{d.rollout_path} is not where rollout {d.rollout} lives"
        raise BundleRejected(Reason.ROLLOUT_MISMATCH, message, field=f"{at}.rollout_path")
    _check_locations(d.release_signatures, f"{d.release_path}.d/", f"{at}.release_signatures")
    _check_locations(d.approvals, f"approvals/{d.rollout}/", f"{at}.approvals")

    release_bytes = _decode(d.release_b64, f"{at}.release_b64")
    signers = SignerSet(threshold=anchors.release_threshold, keys=_key_refs(anchors.release_signers))
    status = check_release(d.release_path, release_bytes, _encoded(d.release_signatures), signers, verifier)
    if not status.met:
        field_ = f"{at}.release_signatures"
        raise BundleRejected(Reason.RELEASE_UNSIGNED, _shortfall(status), file=d.release_path, field=field_)
    release, _ = _load(d.release_path, release_bytes, Release, f"{at}.release_b64")
    if (release.app, release.version) != (d.app, d.version):
        message = (
            f"release file holds {release.app} {release.version}, the deployment says {d.app} {d.version}"
        )
        raise BundleRejected(Reason.RELEASE_MISMATCH, message, file=d.release_path, field=f"{at}.version")

    rollout_bytes = _decode(d.rollout_b64, f"{at}.rollout_b64")
    rollout, rollout_data = _load(d.rollout_path, rollout_bytes, Rollout, f"{at}.rollout_b64")
    if (rollout.name, rollout.app, rollout.release) != (d.rollout, d.app, d.version):
        message = (
            f"rollout file is {rollout.name!r} delivering {rollout.app} {rollout.release}, "
            f"the deployment says {d.rollout!r} delivering {d.app} {d.version}"
        )
        raise BundleRejected(Reason.ROLLOUT_MISMATCH, message, file=d.rollout_path, field=at)

    layers = _check_config_files(d, device_id, at)

    required = max(anchors.approvals_floor(d.stage), d.approvals_required)
    if required > 0:
        configs = (d.config_root, d.config_count)
        payload = approval_payload(d.rollout, rollout_data, d.release_path, release_bytes, configs)
        approvers = _key_refs(anchors.approvers)
        status = check_approvals(
            d.rollout_path, payload, _encoded(d.approvals), approvers, required, verifier
        )
        if not status.met:
            message = f"stage {d.stage.value}: {_shortfall(status)}"
            field_ = f"{at}.approvals"
            raise BundleRejected(Reason.APPROVALS_BELOW_THRESHOLD, message, file=d.rollout_path, field=field_)
    _check_config(d.config, layers, release, d.release_path, f"{at}.config")
    return release


_LAYER_RANK = {"default": 0, "cohort": 1, "device": 2}


def _check_config_files(d: BundleDeployment, device_id: str, at: str) -> list[tuple[str, dict[str, Any]]]:
    """The robot's config layers as (path, values), each proven to be in the approved config set,
    in precedence order; ``d.config`` must be exactly their merge (nothing the controller merged
    is taken on trust)."""
    layers: list[tuple[str, dict[str, Any]]] = []
    last: tuple[int, str] | None = None
    for i, item in enumerate(d.config_files):
        where = f"{at}.config_files[{i}]"
        found = classify(item.path)
        if found is None or found.kind is not FileKind.CONFIG or found.name != d.app:
            message = f"{item.path!r} is not a config file of {d.app} (configs/{d.app}/<scope>.yaml)"
            raise BundleRejected(Reason.BUNDLE_INVALID, message, field=f"{where}.path")
        scope = found.stem.split("-", 1)[0]
        if scope not in _LAYER_RANK or (scope == "device" and found.stem != f"device-{device_id}"):
            message = f"{item.path} does not apply to device {device_id!r}"
            raise BundleRejected(Reason.BUNDLE_INVALID, message, file=item.path, field=f"{where}.path")
        order = (_LAYER_RANK[scope], found.stem)
        if last is not None and order <= last:
            message = f"{item.path} is out of precedence order (default, cohorts by name, device)"
            raise BundleRejected(Reason.BUNDLE_INVALID, message, file=item.path, field=f"{where}.path")
        last = order
        raw = _decode(item.b64, f"{where}.b64")
        if len(raw) > MAX_CONFIG_FILE_BYTES:
            message = f"{len(raw)} bytes; at most {MAX_CONFIG_FILE_BYTES}"
            raise BundleRejected(Reason.TOO_LARGE, message, file=item.path, field=f"{where}.b64")
        if not included(item.path, raw, item.proof, d.config_root, d.config_count):
            message = (
                f"{item.path} (sha256 {hashlib.sha256(raw).hexdigest()}) is not in the config set "
                f"{d.config_root} of {d.config_count} files the approvals cover"
            )
            raise BundleRejected(Reason.NOT_INCLUDED, message, file=item.path, field=f"{where}.proof")
        instance, _ = _load(item.path, raw, ConfigInstance, f"{where}.b64")
        if instance.app != d.app or instance.file_stem != found.stem:
            message = f"file holds {instance.app} {instance.file_stem}, its path says {d.app} {found.stem}"
            raise BundleRejected(Reason.CONFIG_INVALID, message, file=item.path, field=f"{where}.b64")
        layers.append((item.path, instance.values))
    merged = merge_values(values for _, values in layers) if layers else None
    if merged_sha256(merged) != merged_sha256(d.config):
        message = (
            f"config values are not the merge of the {len(layers)} config files the bundle carries "
            "(the robot merges them itself)"
        )
        raise BundleRejected(Reason.CONFIG_MISMATCH, message, field=f"{at}.config")
    return layers


def _check_locations(files: Mapping[str, str], prefix: str, where: str) -> None:
    for path in files:
        if not path.startswith(prefix) or "/" in path[len(prefix) :]:
            raise BundleRejected(Reason.BUNDLE_INVALID, f"{path!r} is not a file in {prefix}", field=where)


def _decode(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleRejected(Reason.BUNDLE_INVALID, f"not valid base64: {exc}", field=where) from None


def _load(path: str, raw: bytes, model_type: type[M], where: str) -> tuple[M, dict[str, Any]]:
    try:
        # Signed bytes the controller schema-checked before it built the bundle: the strict models
        # judge them here, without the compiled JSON Schema validator (robots' memory budget).
        loaded = load_document(path, raw, model_type, schema=False)
    except InvalidContent as exc:
        raise BundleRejected(Reason.BUNDLE_INVALID, str(exc), file=path, field=where) from None
    return loaded.model, loaded.data


def _check_config(
    config: dict[str, Any] | None,
    layers: list[tuple[str, dict[str, Any]]],
    release: Release,
    path: str,
    where: str,
) -> None:
    """Hold the merged values to the signed release's schema before anything is written; a
    violation names the config file that set the offending value and its field."""
    if config is None:
        return
    if release.config is None:
        message = f"config values given, but {release.app} {release.version} declares no config schema"
        raise BundleRejected(Reason.CONFIG_INVALID, message, file=path, field=where)
    # Imported here, not at the top: most bundles carry no config, and jsonschema (with referencing,
    # rpds, attrs) is ~3 MB of a robot agent's resident memory (bench/agent_rss.py).
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for
    from referencing.exceptions import Unresolvable

    schema = release.config.json_schema
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
        errors = sorted(cls(schema).iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    except (SchemaError, Unresolvable) as exc:
        raise BundleRejected(
            Reason.CONFIG_INVALID, f"config schema unusable: {exc}", file=path, field=where
        ) from None
    if errors:
        first = errors[0]
        spot = ".".join(str(p) for p in first.absolute_path) or "(top)"
        source = _setter(layers, tuple(first.absolute_path))
        message = f"{spot}: {first.message} (schema of {path})"
        if source is None:
            raise BundleRejected(Reason.CONFIG_INVALID, message, file=path, field=where)
        raise BundleRejected(Reason.CONFIG_INVALID, message, file=source[0], field=source[1])


def _setter(layers: list[tuple[str, dict[str, Any]]], path: tuple[Any, ...]) -> tuple[str, str] | None:
    """(config file, ``values.<field>``) of the highest layer that set ``path`` or its closest parent."""
    for length in range(len(path), 0, -1):
        for file, values in reversed(layers):
            if _has(values, path[:length]):
                return file, ".".join(["values", *map(str, path[:length])])
    return None


def _has(node: Any, path: tuple[Any, ...]) -> bool:
    for part in path:
        in_mapping = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_mapping or in_list):
            return False
        node = node[part]
    return True


def _key_refs(fingerprints: frozenset[str]) -> list[KeyRef]:
    return [KeyRef(fingerprint=f, name=f) for f in sorted(fingerprints)]


def _encoded(files: Mapping[str, str]) -> dict[str, bytes]:
    return {path: text.encode("utf-8") for path, text in files.items()}


def _shortfall(status: ThresholdStatus) -> str:
    errors = [d.message for d in status.diagnostics if d.severity == "error"]
    return errors[-1] if errors else f"{len(status.verified)} of {status.required} verified"


def _is_fpr(value: str) -> bool:
    return re.fullmatch(FINGERPRINT_PATTERN, value) is not None
