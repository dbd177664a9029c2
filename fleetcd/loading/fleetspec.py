"""The whole fleet repository as typed models: every file loaded, every per-file problem collected.

``load_spec`` takes a snapshot (path → bytes) and returns a :class:`FleetSpec` plus diagnostics.
It checks what one file can tell about itself (shape, kind, that its name matches its location);
relations between files are ``fleetcd.validation``'s job. Pure: no disk, no git, no gpg.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

from fleetcd.desired.configset import ConfigSet
from fleetcd.errors import Diagnostic, InvalidContent
from fleetcd.layout import CONFIGS_PREFIX, FLEET_FILE, Classified, FileKind, classify, is_managed
from fleetcd.loading.documents import Loaded, load_document
from fleetcd.loading.memo import DocumentMemo
from fleetcd.models import Cohort, ConfigInstance, Device, Fleet, Release, Rollout, TrustRoot, Withdrawal
from fleetcd.reasons import Reason

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ReleaseEntry:
    doc: Loaded[Release]
    signatures: Mapping[str, bytes]  # 'releases/<app>/<v>.yaml.d/<FPR>.asc' -> armored bytes


@dataclass(frozen=True)
class RolloutEntry:
    doc: Loaded[Rollout]
    approvals: Mapping[str, bytes]  # 'approvals/<rollout>/<FPR>.asc' -> armored bytes


@dataclass(frozen=True)
class TrustRootEntry:
    doc: Loaded[TrustRoot]
    signatures: Mapping[str, bytes]  # 'trust/root/<N>.yaml.d/<FPR>.asc' -> armored bytes


@dataclass
class FleetSpec:
    """Everything the repository declares, keyed by identity. Files that failed to load are absent."""

    fleet: Loaded[Fleet] | None = None
    devices: dict[str, Loaded[Device]] = field(default_factory=dict)
    cohorts: dict[str, Loaded[Cohort]] = field(default_factory=dict)
    releases: dict[tuple[str, str], ReleaseEntry] = field(default_factory=dict)
    rollouts: dict[str, RolloutEntry] = field(default_factory=dict)
    configs: dict[str, list[Loaded[ConfigInstance]]] = field(default_factory=dict)
    keys: dict[str, bytes] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)
    trust_roots: dict[int, TrustRootEntry] = field(default_factory=dict)  # version -> entry
    # (app, version) -> the withdrawal. Loaded, every one is here; a validated spec
    # (:func:`fleetcd.validation.validate_snapshot`) keeps only those its approvers signed.
    withdrawals: dict[tuple[str, str], Loaded[Withdrawal]] = field(default_factory=dict)
    # (app, version) -> 'withdrawals/<app>/<v>.yaml.d/<FPR>.asc' -> armored approver signature
    withdrawal_approvals: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)
    _config_sets: dict[str, ConfigSet] | None = field(default=None, repr=False, compare=False)

    def release(self, app: str, version: str) -> ReleaseEntry | None:
        return self.releases.get((app, version))

    def controller_keys_ever(self) -> frozenset[str]:
        """Every controller key any trust-root version on main lists (receipts outlive rotations)."""
        return frozenset(f for e in self.trust_roots.values() for f in e.doc.model.controller_fingerprints)

    def withdrawal(self, app: str, version: str) -> Withdrawal | None:
        """The withdrawal of release ``app`` ``version`` on this snapshot, if there is one."""
        loaded = self.withdrawals.get((app, version))
        return loaded.model if loaded is not None else None

    @property
    def trust_root(self) -> TrustRoot | None:
        """The newest trust-root version that loaded (verified by :mod:`fleetcd.validation.trust`)."""
        return self.trust_roots[max(self.trust_roots)].doc.model if self.trust_roots else None

    def config_set(self, app: str) -> ConfigSet:
        """Every ``configs/<app>/*.yaml`` file as committed (loadable or not): what approvals cover."""
        if self._config_sets is None:
            by_app: dict[str, dict[str, bytes]] = {}
            for path, raw in self.files.items():
                where = classify(path) if path.startswith(CONFIGS_PREFIX) else None
                if where is not None and where.kind is FileKind.CONFIG:
                    by_app.setdefault(where.name, {})[path] = raw
            self._config_sets = {name: ConfigSet(files) for name, files in by_app.items()}
        return self._config_sets.get(app) or ConfigSet({})


def load_spec(
    files: Mapping[str, bytes], memo: DocumentMemo | None = None
) -> tuple[FleetSpec, list[Diagnostic]]:
    """Load every managed file of a snapshot; never raises for content problems.

    With a ``memo`` (a long-running caller's), a document whose path and bytes it holds from the
    previous snapshot is not parsed again, and it keeps this snapshot's documents only.
    """
    spec, documents, attached = load_spec_parts(files, memo)
    return spec, [*documents, *attached]


def load_spec_parts(
    files: Mapping[str, bytes], memo: DocumentMemo | None = None
) -> tuple[FleetSpec, list[Diagnostic], list[Diagnostic]]:
    """:func:`load_spec` with its findings in two parts: the documents' (and unexpected files'),
    then the signatures', approvals' and keys' (:func:`reattach` redoes the second part alone)."""
    if memo is None:
        return _load_spec(files, None)
    with memo.round():
        return _load_spec(files, memo)


# Files that are no document: signatures, approvals and keys, attached to the documents they sign.
# Every one ends in .asc; no cross-file content check reads them (only the trust checks do).
TRUST_FILE_KINDS = frozenset(
    {
        FileKind.RELEASE_SIGNATURE,
        FileKind.APPROVAL,
        FileKind.KEY,
        FileKind.TRUST_ROOT_SIGNATURE,
        FileKind.WITHDRAWAL_APPROVAL,
    }
)


def _load_spec(
    files: Mapping[str, bytes], memo: DocumentMemo | None
) -> tuple[FleetSpec, list[Diagnostic], list[Diagnostic]]:
    spec = FleetSpec(files=files)
    problems: list[Diagnostic] = []
    trust_files: list[tuple[str, Classified]] = []
    if FLEET_FILE not in files:
        problems.append(Diagnostic(FLEET_FILE, None, None, "fleet.yaml is missing", Reason.UNKNOWN_REFERENCE))
    for path in sorted(files):
        raw = files[path]
        where = classify(path)
        if where is None:
            if is_managed(path):
                problems.append(Diagnostic(path, None, None, _unexpected(path), Reason.INVALID))
            continue
        if where.kind in TRUST_FILE_KINDS:
            trust_files.append((path, where))
            continue
        try:
            _load_one(spec, memo, path, raw, where.kind, where.name, where.version, where.stem)
        except InvalidContent as exc:
            problems.extend(exc.diagnostics)
    return spec, problems, _attach_trust_files(spec, trust_files)


def reattach(spec: FleetSpec, files: Mapping[str, bytes]) -> tuple[FleetSpec, list[Diagnostic]]:
    """``spec``'s documents with the signatures, approvals and keys of ``files``, and their findings.

    Only for a snapshot whose documents are ``spec``'s own, path for path and byte for byte, and
    whose other files differ from ``spec.files`` at most in :data:`TRUST_FILE_KINDS` files: then it
    equals :func:`load_spec_parts` of ``files`` (the documents are shared, not copied)."""
    again = FleetSpec(
        fleet=spec.fleet,
        devices=spec.devices,
        cohorts=spec.cohorts,
        releases={key: ReleaseEntry(entry.doc, {}) for key, entry in spec.releases.items()},
        rollouts={name: RolloutEntry(entry.doc, {}) for name, entry in spec.rollouts.items()},
        configs=spec.configs,
        files=files,
        trust_roots={v: TrustRootEntry(entry.doc, {}) for v, entry in spec.trust_roots.items()},
        withdrawals=spec.withdrawals,
    )
    trust_files = []
    for path in sorted(p for p in files if p.endswith(".asc")):
        where = classify(path)
        if where is not None and where.kind in TRUST_FILE_KINDS:
            trust_files.append((path, where))
    return again, _attach_trust_files(again, trust_files)


def _attach_trust_files(spec: FleetSpec, trust_files: list[tuple[str, Classified]]) -> list[Diagnostic]:
    """Signatures, approvals and keys (in path order) onto the documents they belong to."""
    files = spec.files
    problems: list[Diagnostic] = []
    signatures: dict[tuple[str, str], dict[str, bytes]] = {}
    approvals: dict[str, dict[str, bytes]] = {}
    root_signatures: dict[int, dict[str, bytes]] = {}
    for path, where in trust_files:
        raw = files[path]
        if where.kind is FileKind.RELEASE_SIGNATURE:
            signatures.setdefault((where.name, where.version), {})[path] = raw
        elif where.kind is FileKind.APPROVAL:
            approvals.setdefault(where.name, {})[path] = raw
        elif where.kind is FileKind.KEY:
            spec.keys[path] = raw
        elif where.kind is FileKind.TRUST_ROOT_SIGNATURE:
            root_signatures.setdefault(int(where.version), {})[path] = raw
        elif where.kind is FileKind.WITHDRAWAL_APPROVAL:
            spec.withdrawal_approvals.setdefault((where.name, where.version), {})[path] = raw
    _attach(spec, signatures, approvals, problems)
    for version, sigs in root_signatures.items():
        root = spec.trust_roots.get(version)
        if root is not None:
            spec.trust_roots[version] = TrustRootEntry(root.doc, dict(sigs))
        elif f"trust/root/{version}.yaml" not in files:
            problems.extend(
                Diagnostic(path, None, None, "signature for a trust-root version that does not exist")
                for path in sigs
            )
    for (app, withdrawn), found in spec.withdrawal_approvals.items():
        if f"withdrawals/{app}/{withdrawn}.yaml" not in files:
            problems.extend(
                Diagnostic(path, None, None, "approval for a withdrawal that does not exist")
                for path in found
            )
    return problems


def _load(memo: DocumentMemo | None, path: str, raw: bytes, model_type: type[M]) -> Loaded[M]:
    return load_document(path, raw, model_type) if memo is None else memo.load(path, raw, model_type)


def _load_one(
    spec: FleetSpec,
    memo: DocumentMemo | None,
    path: str,
    raw: bytes,
    kind: FileKind,
    name: str,
    version: str,
    stem: str,
) -> None:
    if kind is FileKind.FLEET:
        spec.fleet = _load(memo, path, raw, Fleet)
    elif kind is FileKind.DEVICE:
        device = _load(memo, path, raw, Device)
        _name_matches(device, device.model.id, name, "id")
        spec.devices[device.model.id] = device
    elif kind is FileKind.COHORT:
        cohort = _load(memo, path, raw, Cohort)
        _name_matches(cohort, cohort.model.name, name, "name")
        spec.cohorts[cohort.model.name] = cohort
    elif kind is FileKind.RELEASE:
        release = _load(memo, path, raw, Release)
        _name_matches(release, release.model.app, name, "app")
        _name_matches(release, release.model.version, version, "version")
        spec.releases[(release.model.app, release.model.version)] = ReleaseEntry(release, {})
    elif kind is FileKind.ROLLOUT:
        rollout = _load(memo, path, raw, Rollout)
        _name_matches(rollout, rollout.model.name, name, "name")
        spec.rollouts[rollout.model.name] = RolloutEntry(rollout, {})
    elif kind is FileKind.CONFIG:
        config = _load(memo, path, raw, ConfigInstance)
        _name_matches(config, config.model.app, name, "app")
        _name_matches(config, config.model.file_stem, stem, "scope")
        spec.configs.setdefault(config.model.app, []).append(config)
    elif kind is FileKind.WITHDRAWAL:
        withdrawal = _load(memo, path, raw, Withdrawal)
        _name_matches(withdrawal, withdrawal.model.app, name, "app")
        _name_matches(withdrawal, withdrawal.model.version, version, "version")
        spec.withdrawals[(withdrawal.model.app, withdrawal.model.version)] = withdrawal
    elif kind is FileKind.TRUST_ROOT:
        root = _load(memo, path, raw, TrustRoot)
        _name_matches(root, str(root.model.version), version, "version")
        spec.trust_roots[root.model.version] = TrustRootEntry(root, {})


def _name_matches(doc: Loaded[M], declared: str, from_path: str, field_name: str) -> None:
    if declared != from_path:
        raise InvalidContent.at(
            doc.path,
            f"{declared!r} does not match the file's location (expected {from_path!r})",
            line=doc.line(field_name),
            field=field_name,
            reason=Reason.NAME_MISMATCH,
        )


def _attach(
    spec: FleetSpec,
    signatures: dict[tuple[str, str], dict[str, bytes]],
    approvals: dict[str, dict[str, bytes]],
    problems: list[Diagnostic],
) -> None:
    for key, sigs in signatures.items():
        entry = spec.releases.get(key)
        if entry is None:
            if f"releases/{key[0]}/{key[1]}.yaml" not in spec.files:
                for path in sigs:
                    problems.append(
                        Diagnostic(path, None, None, "signature for a release file that does not exist")
                    )
            continue
        spec.releases[key] = ReleaseEntry(entry.doc, dict(sigs))
    for name, found in approvals.items():
        rollout = spec.rollouts.get(name)
        if rollout is None:
            if f"rollouts/{name}.yaml" not in spec.files:
                for path in found:
                    problems.append(
                        Diagnostic(path, None, None, "approval for a rollout that does not exist")
                    )
            continue
        spec.rollouts[name] = RolloutEntry(rollout.doc, dict(found))


def _unexpected(path: str) -> str:
    top = path.split("/", 1)[0]
    expected = {
        "devices": "devices/<id>.yaml",
        "cohorts": "cohorts/<name>.yaml",
        "releases": "releases/<app>/<version>.yaml or releases/<app>/<version>.yaml.d/<FINGERPRINT>.asc",
        "rollouts": "rollouts/<name>.yaml",
        "approvals": "approvals/<rollout>/<FINGERPRINT>.asc",
        "configs": "configs/<app>/<default|cohort-NAME|device-ID>.yaml",
        "keys": "keys/<name>.asc",
        "trust": "trust/root/<version>.yaml or trust/root/<version>.yaml.d/<FINGERPRINT>.asc",
        "withdrawals": (
            "withdrawals/<app>/<version>.yaml or withdrawals/<app>/<version>.yaml.d/<FINGERPRINT>.asc"
        ),
    }.get(top, "a fleetcd document")
    return f"unexpected file here; expected {expected} (names: letters, digits, single . _ -)"
