"""Per-robot desired state, step 6 (write) of a reconcile: what each robot's bundle says (pure).

:func:`bundle_for` turns a robot's deployment records into a :class:`~fleetcd.desired.Bundle`
carrying every byte its agent needs to re-check the trust chain on its own: the exact release file
and its signatures, the exact rollout file and its approvals, the stage those approvals were judged
at, and the config instances that apply to the robot (exact bytes, each with its proof of membership
in the app's config set the approvals cover) with their merged values. The records say *what* the
robot runs — release and config files (:attr:`DeploymentRecord.config_files`) — and the fleet
repository snapshot (a :class:`DeliverySource`) supplies the signed bytes. A deployment is one-time
use: the merge of its config files must hash to the record's ``config_sha256``, so an edited config
can never travel under an existing deployment id (the edit makes a new generation and new records).

Rollbacks. A rollback record deploys the *previous* release under the *current* rollout's name,
but the current rollout file names the new release, and the robot insists the rollout file it gets
names the version it installs (``verify_bundle``: ``rollout_mismatch``). So a rollback needs the
evidence that once approved the previous release: the caller passes it in ``evidence`` keyed by
(rollout, release sha256), usually ``DeliverySource(spec_at_that_commit).evidence(rollout)``
read from main's history. Without it :func:`bundle_for` stalls with ``rollout_mismatch`` instead of
shipping a bundle every robot would refuse.

:func:`deployment_sources` says which record, evidence and config files each deployment of a
robot's bundle is built from: :func:`bundle_for` builds from them, and
:mod:`controller.delivery.inputs` digests them, so that a robot whose inputs did not change is
not built again. No I/O, no clock.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from controller.records.model import Action, DeploymentRecord, TargetStatus
from fleetcd.desired import BUNDLE_FILE, Bundle, BundleConfigFile, BundleDeployment
from fleetcd.desired.configset import ConfigSet, merge_values, merged_sha256
from fleetcd.errors import Diagnostic, InvalidContent
from fleetcd.loading.fleetspec import FleetSpec
from fleetcd.models import Cohort, Device, Stage
from fleetcd.planning.selection import rollout_stage, selector_matches
from fleetcd.reasons import Reason
from fleetcd.validation.configs import config_layers
from fleetcd.validation.context import Context

BUNDLE_FORMAT: Literal["fleetcd.dev/bundle/v1"] = "fleetcd.dev/bundle/v1"


@dataclass(frozen=True)
class Evidence:
    """The signed bytes behind one (rollout, release): what a robot re-verifies for a deployment."""

    rollout: str
    rollout_path: str
    rollout_raw: bytes
    approvals: Mapping[str, bytes]
    stage: Stage
    approvals_required: int
    app: str
    version: str
    release_path: str
    release_raw: bytes
    release_signatures: Mapping[str, bytes]
    not_before: datetime | None = None
    release_sha256: str = ""  # of release_raw; given when known (hashed once per reconcile), else hashed here
    configs: ConfigSet = field(default_factory=lambda: ConfigSet({}))  # the app config set approvals cover
    config_values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # path -> values

    def __post_init__(self) -> None:
        if not self.release_sha256:
            object.__setattr__(self, "release_sha256", hashlib.sha256(self.release_raw).hexdigest())


class DeliverySource:
    """One fleet snapshot, with the per-rollout evidence and per-robot configs computed once.

    Device stages and cohort memberships are O(fleet) to derive, so a reconcile builds one source
    and asks it for every robot instead of recomputing them per bundle.
    """

    def __init__(self, spec: FleetSpec, release_sha256: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self.context = Context(spec)
        self._evidence: dict[str, Evidence] = {}
        # rollout name -> sha256 of its release file, when the caller hashed them already
        self.release_sha256: Mapping[str, str] = release_sha256 or {}

    @property
    def trust_version(self) -> int:
        """The trust-root version every bundle of this snapshot names (the newest on main)."""
        root = self.spec.trust_root
        if root is None:
            raise InvalidContent.at("trust/root/1.yaml", "no trust root", reason=Reason.TRUST_ROOT_MISSING)
        return root.version

    def evidence(self, rollout: str) -> Evidence:
        """The rollout file, its approvals, stage and release as this snapshot holds them."""
        if rollout not in self._evidence:
            self._evidence[rollout] = self._build_evidence(rollout)
        return self._evidence[rollout]

    def _build_evidence(self, rollout: str) -> Evidence:
        entry = self.spec.rollouts.get(rollout)
        if entry is None:
            raise InvalidContent.at(
                f"rollouts/{rollout}.yaml", "rollout is not in the snapshot", reason=Reason.UNKNOWN_REFERENCE
            )
        model = entry.doc.model
        release = self.spec.release(model.app, model.release)
        if release is None:
            message = f"release {model.app} {model.release} is not in the snapshot"
            raise InvalidContent.at(entry.doc.path, message, field="release", reason=Reason.UNKNOWN_REFERENCE)
        trust = self.spec.trust_root
        if trust is None:
            raise InvalidContent.at("trust/root/1.yaml", "no trust root", reason=Reason.TRUST_ROOT_MISSING)
        targeted = stages_of(self.context.cohorts, self.context.devices, model.targets.devices)
        stage = rollout_stage(model, self.context.cohorts, targeted)
        return Evidence(
            rollout=rollout,
            rollout_path=entry.doc.path,
            rollout_raw=entry.doc.raw,
            approvals=dict(entry.approvals),
            stage=stage,
            approvals_required=trust.approvals.required(stage),
            app=model.app,
            version=model.release,
            release_path=release.doc.path,
            release_raw=release.doc.raw,
            release_signatures=dict(release.signatures),
            not_before=model.schedule.not_before,
            release_sha256=self.release_sha256.get(rollout, ""),
            configs=self.spec.config_set(model.app),
            config_values={doc.path: doc.model.values for doc in self.spec.configs.get(model.app, [])},
        )

    def layers(self, app: str, device: str) -> tuple[str, ...]:
        """The config files that apply to ``device`` for ``app``, lowest precedence first."""
        return tuple(layer.path for layer in config_layers(self.context, app, device))

    def config(self, app: str, device: str) -> tuple[tuple[str, ...], str | None]:
        """(the applying config files, sha256 of their merge or None when none applies)."""
        layers = config_layers(self.context, app, device)
        merged = merge_values(layer.model.values for layer in layers) if layers else None
        return tuple(layer.path for layer in layers), merged_sha256(merged)


EvidenceKey = str | tuple[str, str]  # a record id, or (rollout, release sha256)


def stages_of(
    cohorts: Mapping[str, Cohort], devices: Mapping[str, Device], wanted: Iterable[str]
) -> dict[str, Stage]:
    """:func:`~fleetcd.planning.selection.device_stages` for the ``wanted`` robots alone: what a
    rollout's stage reads for the robots it targets directly, without a pass over the fleet (at
    100,000 robots every selector cohort matched against every robot, each reconcile)."""
    out: dict[str, Stage] = {}
    wanted = [d for d in dict.fromkeys(wanted) if d in devices]
    for cohort in cohorts.values():  # in the same order as device_stages: the first of a rank wins
        listed = set(cohort.devices)
        for device in wanted:
            member = device in listed or selector_matches(cohort, devices[device])
            if member and (device not in out or cohort.stage.rank > out[device].rank):
                out[device] = cohort.stage
    return out


def bundle_for(
    device: str,
    records: Sequence[DeploymentRecord],
    spec: FleetSpec | DeliverySource,
    serial: int,
    issued_at: datetime,
    expires_at: datetime,
    *,
    evidence: Mapping[EvidenceKey, Evidence] | None = None,
) -> Bundle:
    """The bundle for ``device``: one deployment per app from its current records.

    ``records`` are the robot's records the controller still wants it to hold (in flight, or
    deployed, of the current generations); archived ones are dropped, and of several for one app
    the newest wins (a new generation supersedes a finished one). ``evidence`` overrides, per
    record id or per (rollout, release sha256), where the signed bytes come from (older
    generations and rollbacks: see the module docstring). Raises :class:`InvalidContent` when the
    snapshot cannot back a record with the bytes it names.
    """
    source = spec if isinstance(spec, DeliverySource) else DeliverySource(spec)
    deployments = [
        _deployment(record, proof, layers)
        for record, proof, layers in deployment_sources(device, records, source, evidence or {})
    ]
    try:
        return Bundle(
            format=BUNDLE_FORMAT,
            device=device,
            serial=serial,
            issued_at=issued_at,
            expires_at=expires_at,
            trust_version=source.trust_version,
            deployments=deployments,
        )
    except ValidationError as exc:
        raise _invalid(device, exc) from None


def deployment_sources(
    device: str,
    records: Sequence[DeploymentRecord],
    source: DeliverySource,
    evidence: Mapping[EvidenceKey, Evidence],
) -> list[tuple[DeploymentRecord, Evidence, tuple[str, ...]]]:
    """What each deployment of ``device``'s bundle is built from, in bundle order: the record, the
    evidence backing it and the config files it ships. Raises :class:`InvalidContent` like
    :func:`bundle_for` when the evidence does not back the record."""
    out = []
    for record in delivered_records(device, records):
        proof = _evidence_for(record, source, evidence)
        if record.commit is not None:  # records name their config files (none: no config)
            layers = record.config_files
        else:  # a record from before records carried config: today's layers its snapshot holds
            layers = tuple(p for p in source.layers(record.app, device) if p in proof.configs.files)
        out.append((record, proof, layers))
    return out


def delivered_records(device: str, records: Sequence[DeploymentRecord]) -> list[DeploymentRecord]:
    """The records ``device``'s bundle carries: per app the newest one that is not archived."""
    newest: dict[str, DeploymentRecord] = {}
    for record in records:
        if record.device != device:
            raise ValueError(f"record {record.id} belongs to {record.device!r}, not {device!r}")
        if record.target_status is TargetStatus.ARCHIVED:
            continue
        held = newest.get(record.app)
        if held is None or _recency(record) > _recency(held):
            newest[record.app] = record
    return [newest[app] for app in sorted(newest)]


def _recency(record: DeploymentRecord) -> tuple[datetime, int, str]:
    return (record.created_at, record.generation, record.id)


def _evidence_for(
    record: DeploymentRecord, source: DeliverySource, overrides: Mapping[EvidenceKey, Evidence]
) -> Evidence:
    found = overrides.get(record.id) or overrides.get((record.rollout, record.release_sha256))
    if found is None:
        found = source.evidence(record.rollout)
        if found.version != record.version:
            message = (
                f"{record.action.value} of {record.app} {record.version} to {record.device} "
                f"({record.id}) needs the approved rollout that named {record.version}; this file "
                f"names {found.version} (pass its evidence from the commit that approved it)"
            )
            raise InvalidContent.at(
                found.rollout_path, message, field="release", reason=Reason.ROLLOUT_MISMATCH
            )
    if found.release_sha256 != record.release_sha256:
        message = (
            f"release bytes have sha256 {found.release_sha256}, deployment {record.id} was "
            f"created for {record.release_sha256}"
        )
        raise InvalidContent.at(found.release_path, message, reason=Reason.RELEASE_MODIFIED)
    return found


def _deployment(record: DeploymentRecord, proof: Evidence, layers: Sequence[str]) -> BundleDeployment:
    files, config = _config_files(record, proof, layers)
    return BundleDeployment(
        deployment_id=record.id,
        rollout=proof.rollout,
        generation=record.generation,
        app=record.app,
        version=record.version,
        action=_action(record),
        release_path=proof.release_path,
        release_b64=_b64(proof.release_raw),
        release_signatures=_armored(proof.release_signatures),
        rollout_path=proof.rollout_path,
        rollout_b64=_b64(proof.rollout_raw),
        approvals=_armored(proof.approvals),
        stage=proof.stage,
        approvals_required=proof.approvals_required,
        config=config,
        config_root=proof.configs.root,
        config_count=proof.configs.count,
        config_files=files,
        not_before=proof.not_before,
    )


def _config_files(
    record: DeploymentRecord, proof: Evidence, layers: Sequence[str]
) -> tuple[list[BundleConfigFile], dict[str, Any] | None]:
    """The record's config layers as shipped (bytes + proof) and their merge, checked against the
    record: the bytes a deployment id stands for never change."""
    files, values = [], []
    for path in layers:
        if path not in proof.configs.files or path not in proof.config_values:
            message = f"{record.id} delivers {path}, which the snapshot of its approvals does not hold"
            raise InvalidContent.at(path, message, reason=Reason.CONFIG_MISMATCH)
        files.append(
            BundleConfigFile(path=path, b64=_b64(proof.configs.files[path]), proof=proof.configs.proof(path))
        )
        values.append(proof.config_values[path])
    merged = merge_values(values) if values else None
    if record.config_sha256 is not None and merged_sha256(merged) != record.config_sha256:
        message = (
            f"the merge of {', '.join(layers)} has sha256 {merged_sha256(merged)}, deployment "
            f"{record.id} was created for {record.config_sha256}"
        )
        raise InvalidContent.at(proof.rollout_path, message, reason=Reason.CONFIG_MISMATCH)
    return files, merged


def _action(record: DeploymentRecord) -> Literal["deploy", "stage", "rollback"]:
    # Blue/green: until the switch the robot only installs into its inactive slot.
    if record.target_status is TargetStatus.STAGED:
        return "stage"
    if record.action is Action.ROLLBACK:
        return "rollback"
    return "deploy"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _armored(files: Mapping[str, bytes]) -> dict[str, str]:
    out = {}
    for path in sorted(files):
        try:
            out[path] = files[path].decode("ascii")
        except UnicodeDecodeError:
            raise InvalidContent.at(
                path, "not an ASCII-armored signature", reason=Reason.SIGNATURE_INVALID
            ) from None
    return out


def _invalid(device: str, exc: ValidationError) -> InvalidContent:
    where = f"{BUNDLE_FILE} of {device}"
    return InvalidContent(
        Diagnostic(where, None, ".".join(map(str, e["loc"])) or None, e["msg"], Reason.BUNDLE_INVALID)
        for e in exc.errors()[:5]
    )
