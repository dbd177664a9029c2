"""Per-robot desired state, step 6 (write) of a reconcile: change detection, without building (pure).

Two digests per robot, both recorded in its device file when its ref is written
(:class:`~controller.state.model.PublishedDesired`):

- :func:`content_digest`: what the robot runs, its bundle without serial and timestamps. Its ref
  moves when this changes (:mod:`controller.delivery.select`).
- :meth:`BundleInputs.digest`: what the bundle is built from. Per deployment, the record's fields
  a bundle carries and a fingerprint of the evidence behind it (the bytes of the rollout file,
  approvals, release file and signatures, the config set's root and each file's values, the stage
  and approvals threshold judged), plus the robot's id and the trust-root version.

A bundle is a pure function of its inputs (:func:`controller.delivery.bundles.bundle_for`), so
while a robot's inputs digest is the one recorded, its content digest is the one recorded too and
its bundle is not built: a wave to 1,000 robots of 100,000 builds about 1,000 bundles (plus the
robots whose ref is renewed or healed, which need the bytes), not 100,000. Building one (base64
of the release and rollout files, the config proofs, a validated model) and hashing it costs about
0.1 ms; a robot's inputs digest is one sha256 over a few short strings, each evidence being
fingerprinted once per reconcile however many robots share it.

:func:`recipe` names how bundles are built: :data:`INPUTS_FORMAT` and the bundle model's JSON
Schema. A change to the model changes it by itself; a change to what ``bundle_for`` builds from
the same inputs must bump :data:`INPUTS_FORMAT`. Either way every robot is built once more and
compared by content, and robots whose content did not change only get the new inputs digest
recorded (no ref moves). No I/O, no clock.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from controller.delivery.bundles import (
    BUNDLE_FORMAT,
    DeliverySource,
    Evidence,
    EvidenceKey,
    deployment_sources,
)
from controller.records.model import DeploymentRecord
from fleetcd.desired import Bundle
from fleetcd.desired.configset import merged_sha256
from fleetcd.errors import InvalidContent

INPUTS_FORMAT = "fleetcd.dev/bundle-inputs/v1"
# Fields that change with every signed root although nothing the robot runs changed.
_VOLATILE_FIELDS = ("serial", "issued_at", "expires_at")


# Canonical JSON (sorted keys, no whitespace, UTF-8), as the content digest always hashed it.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _sha256_json(data: Any) -> str:
    return hashlib.sha256(_CANONICAL.encode(data).encode("utf-8")).hexdigest()


def content_digest(bundle: Bundle) -> str:
    """sha256 of what the robot runs (device and deployments), not of serial or timestamps."""
    return encode_bundle(bundle)[1]


def encode_bundle(bundle: Bundle) -> tuple[bytes, str]:
    """``bundle.json`` as robots get it (:func:`fleetcd.desired.canonical_bytes`) and its
    :func:`content_digest`, from one dump of the model with each field's JSON encoded once: the
    deployments (release and rollout files, signatures: nearly all of a bundle's bytes) were dumped
    and encoded twice per robot built, once for each (issue 12, profiled). Canonical JSON of an
    object is its members' ``"key":value`` texts joined by commas in key order, so both come out
    byte for byte as encoding the whole object gives them (tests/test_delivery_encoding.py)."""
    data = bundle.model_dump(mode="json", by_alias=True)
    keys = sorted(data)
    members = [f"{_CANONICAL.encode(key)}:{_CANONICAL.encode(data[key])}" for key in keys]
    full = "{" + ",".join(members) + "}"
    kept = [member for key, member in zip(keys, members, strict=True) if key not in _VOLATILE_FIELDS]
    content = ("{" + ",".join(kept) + "}").encode("utf-8")
    return full.encode("utf-8"), hashlib.sha256(content).hexdigest()


def evidence_fingerprint(evidence: Evidence) -> str:
    """sha256 over everything of ``evidence`` that a deployment built from it carries."""

    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def hashed(files: Mapping[str, bytes]) -> dict[str, str]:
        return {path: sha(data) for path, data in files.items()}

    return _sha256_json(
        {
            "rollout": [evidence.rollout, evidence.rollout_path, sha(evidence.rollout_raw)],
            "approvals": hashed(evidence.approvals),
            "stage": [evidence.stage.value, evidence.approvals_required],
            "release": [
                evidence.app,
                evidence.version,
                evidence.release_path,
                sha(evidence.release_raw),
            ],
            "signatures": hashed(evidence.release_signatures),
            "not_before": None if evidence.not_before is None else evidence.not_before.isoformat(),
            "configs": [evidence.configs.root, evidence.configs.count],
            "values": {path: merged_sha256(values) for path, values in evidence.config_values.items()},
        }
    )


# What a robot's inputs digest was computed from besides its records: per evidence key looked up
# (a record id or a (rollout, release sha256)), the fingerprint of the historic evidence found
# under it, None when none was.
Probe = tuple[tuple[EvidenceKey, str | None], ...]


@dataclass(frozen=True)
class _Held:
    records: Sequence[DeploymentRecord]
    probe: Probe
    digest: str


@dataclass
class InputsMemo:
    """Robots' inputs digests as last computed, kept between reconciles by ``controller run``
    (:class:`~controller.reconcile.memo.RobotMemo`).

    A digest is reused only when everything it was computed from is the same: the robot's records
    (the very tuple the state branch gave, or an equal one), the same ``scope`` (the recipe, the
    trust-root version and the fingerprint of every rollout's evidence on main) and, for each
    evidence key its records look up, the same historic evidence (by fingerprint) or none. A robot
    with a record from before records carried their config files is computed every time (its
    config layers come from main's cohorts, which the scope does not cover)."""

    scope: str | None = None
    held: dict[str, _Held] = field(default_factory=dict)


class BundleInputs:
    """Robots' inputs digests over one delivery source and its historic evidence (one reconcile)."""

    def __init__(
        self,
        source: DeliverySource,
        evidence: Mapping[EvidenceKey, Evidence],
        memo: InputsMemo | None = None,
    ) -> None:
        self._source = source
        self._evidence = evidence
        # id -> (the evidence, kept alive so that its id stays its own, and its fingerprint)
        self._fingerprints: dict[int, tuple[Evidence, str]] = {}
        self._trust_version: int | None = None
        self.fingerprinted = 0  # evidences fingerprinted: one per distinct evidence, not per robot
        self.computed = 0  # digests computed here, not taken from the memo (tests count them)
        self._memo = memo
        self._held: dict[str, _Held] | None = None  # the memo's entries usable under this scope
        self._scope_now = ""
        self._scope_cached: str | None = None
        self._next: dict[str, _Held] = {}

    def fingerprint(self, evidence: Evidence) -> str:
        held = self._fingerprints.get(id(evidence))
        if held is None:
            held = self._fingerprints[id(evidence)] = (evidence, evidence_fingerprint(evidence))
            self.fingerprinted += 1
        return held[1]

    def digest(self, device: str, records: Sequence[DeploymentRecord]) -> str:
        """The inputs digest of ``device``'s bundle from ``records``; raises InvalidContent where
        :func:`~controller.delivery.bundles.bundle_for` would (evidence that does not back a record)."""
        if self._trust_version is None:
            self._trust_version = self._source.trust_version
        if self._memo is None:
            return self._compute(device, records)[0]
        if self._held is None:
            self._scope_now = self.scope()
            self._held = self._memo.held if self._memo.scope == self._scope_now else {}
        held = self._held.get(device)
        if (
            held is not None
            and (held.records is records or held.records == records)
            and self._holds(held.probe)
        ):
            if held.records is not records:  # equal: kept with these, so that next time `is` holds
                held = _Held(records, held.probe, held.digest)
            self._next[device] = held
            return held.digest
        digest, probe = self._compute(device, records)
        if probe is not None:
            self._next[device] = _Held(records, probe, digest)
        else:  # not kept (its layers come from main's cohorts): nor an older entry, carried
            self._next.pop(device, None)
        return digest

    def keep(self, device: str, records: Sequence[DeploymentRecord]) -> None:
        """Carry ``device``'s memo entry into this reconcile's without checking it: for a robot
        whose records (``records``, equal to the entry's) and scope the caller knows to be
        unchanged (:mod:`controller.delivery.quiet`), so that the entry outlives the reconciles
        that skip it; kept with ``records``, so that next time ``is`` holds."""
        if self._memo is None:
            return
        if self._held is None:
            self._scope_now = self.scope()
            self._held = self._memo.held if self._memo.scope == self._scope_now else {}
        held = self._held.get(device)
        if held is not None:
            self._next[device] = held if held.records is records else _Held(records, held.probe, held.digest)

    def carry(self, gone: AbstractSet[str]) -> None:
        """Before any :meth:`digest`: every memo entry is carried into this reconcile's as it is,
        the memo being patched in place (the robots asked about are then looked up and replaced
        in it, one at a time), for a caller that knows every robot of the memo not asked about to
        be quiet (:mod:`controller.delivery.quiet`: its records and scope unchanged), so that the
        entries outlive the reconciles that skip them. ``gone``: robots no longer in the fleet,
        dropped. Work: those robots, not the fleet. A quiet robot's entry may hold records equal
        to its file's but another object (a file the last write settled, parsed anew): it is
        compared by value if the robot is ever asked about, and then kept with the new object (at
        100,000 robots, putting every settled robot's new records in its entry after a fan-out
        cost ~0.1 s in the next reconcile)."""
        if self._memo is None:
            return
        if self._held is None:
            self._scope_now = self.scope()
            self._held = self._memo.held if self._memo.scope == self._scope_now else {}
        if self._held is not self._memo.held:  # another scope: nothing of the memo holds
            return
        self._next = self._held
        for device in gone:
            self._next.pop(device, None)

    def remember(self) -> None:
        """Keep this reconcile's digests in the memo, for the robots asked about (no others)."""
        if self._memo is not None and self._held is not None:
            self._memo.scope, self._memo.held = self._scope_now, self._next

    def _compute(self, device: str, records: Sequence[DeploymentRecord]) -> tuple[str, Probe | None]:
        self.computed += 1
        sources = deployment_sources(device, records, self._source, self._evidence)
        deployments = [
            (
                record.id,
                record.rollout,
                record.generation,
                record.app,
                record.version,
                str(record.action),
                str(record.target_status),
                record.release_sha256,
                record.config_sha256,
                layers,
                self.fingerprint(proof),
            )
            for record, proof, layers in sources
        ]
        digest = _sha256_json((recipe(), device, self._trust_version, deployments))
        if any(record.commit is None for record, _, _ in sources):
            return digest, None  # its layers come from main's cohorts: not kept
        keys: list[EvidenceKey] = []
        for record, _, _ in sources:
            keys.extend((record.id, (record.rollout, record.release_sha256)))
        return digest, tuple((key, self._historic(key)) for key in keys)

    def _historic(self, key: EvidenceKey) -> str | None:
        found = self._evidence.get(key)
        return None if found is None else self.fingerprint(found)

    def _holds(self, probe: Probe) -> bool:
        if not self._evidence:  # no historic evidence at all (the usual case): held when none was
            return all(fingerprint is None for _, fingerprint in probe)
        return all(self._historic(key) == fingerprint for key, fingerprint in probe)

    def scope(self) -> str:
        """What every robot's digest depends on besides its records and historic evidence (computed
        once per reconcile)."""
        if self._scope_cached is not None:
            return self._scope_cached
        if self._trust_version is None:
            self._trust_version = self._source.trust_version
        rollouts: dict[str, str] = {}
        for name in sorted(self._source.spec.rollouts):
            try:
                rollouts[name] = self.fingerprint(self._source.evidence(name))
            except InvalidContent as exc:  # a digest naming it raises again; the others hold
                rollouts[name] = f"invalid: {exc}"
        self._scope_cached = _sha256_json([recipe(), self._trust_version, rollouts])
        return self._scope_cached


@functools.cache
def recipe() -> str:
    """:data:`INPUTS_FORMAT`, the bundle format and the bundle model's JSON Schema, as one digest:
    a change to the model (a field added, renamed or constrained) changes every robot's inputs
    digest by itself, without anyone remembering to bump the format."""
    return _sha256_json([INPUTS_FORMAT, BUNDLE_FORMAT, Bundle.model_json_schema()])
