"""A tiny builder of fleet repositories on disk, for tests of validate, plan, init and the controller.

Documents are plain dicts with sensible defaults; every builder method takes keyword overrides
(``DROP`` removes a field) and returns the dict, so a test can change anything before
:meth:`FleetRepoBuilder.write`. With a :class:`tests.gpgkeys.KeyFactory` the builder also makes the
repository trustworthy: a release signer and two approvers in ``fleet.yaml`` with their keys in
``keys/``, every release signed and every rollout approved on ``write()`` (opt out per document
with ``signers=[]`` / ``approvers=[]``). ``git_init()`` and ``commit()`` turn it into a real git
repository for ``--base`` and controller tests.

    b = FleetRepoBuilder(tmp_path, keys=shared_keys()).standard()
    b.release("nav", "1.1.0")
    b.write()
    assert b.validate().ok
"""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from fleetcd.desired.configset import config_root
from fleetcd.errors import Diagnostic
from fleetcd.layout import (
    approval_path,
    cohort_path,
    config_path,
    device_path,
    release_path,
    release_signature_path,
    rollout_path,
    trust_root_path,
    trust_root_signature_path,
    withdrawal_path,
)
from fleetcd.loading.snapshot import read_directory
from fleetcd.loading.strict_yaml import parse_strict
from fleetcd.trust.approval import approval_payload, withdrawal_payload
from fleetcd.trust.rootchain import RootVersion
from fleetcd.validation import ValidationResult, validate_snapshot
from fleetcd.validation.worktree import validate_work_tree
from tests.gpgkeys import GpgKey, KeyFactory

API = "fleetcd.dev/v1"
PLACEHOLDER_SIGNER = "A" * 40  # syntactically valid, no such key: releases cannot verify without keys
PLACEHOLDER_CONTROLLER = "C" * 40
PLACEHOLDER_ROOT = "B" * 40
TRUST_EXPIRES = "2036-01-01T00:00:00Z"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Fleet Tester",
    "GIT_AUTHOR_EMAIL": "tester@fleet.test",
    "GIT_COMMITTER_NAME": "Fleet Tester",
    "GIT_COMMITTER_EMAIL": "tester@fleet.test",
}


def found(result: ValidationResult) -> list[tuple[str, int | None, str | None, str, str]]:
    """(file, line, field, reason, severity) of every diagnostic: what tests compare against."""
    return [_key(d) for d in result.diagnostics]


def _key(d: Diagnostic) -> tuple[str, int | None, str | None, str, str]:
    return (d.file, d.line, d.field, d.reason.value, d.severity)


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()  # an override value that removes the field


def image_digest(name: str) -> str:
    """A stable, valid-looking ``@sha256:`` digest for a made-up image."""
    return hashlib.sha256(name.encode()).hexdigest()


def render(doc: Mapping[str, Any]) -> bytes:
    """YAML the strict loader accepts: block style, keys in insertion order, ambiguous strings quoted."""
    return yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True, default_flow_style=False).encode()


def _apply(doc: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        if value is DROP:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


class FleetRepoBuilder:
    """A fleet repository under ``root``, built from dicts; nothing touches disk before ``write()``."""

    def __init__(self, root: Path, *, keys: KeyFactory | None = None, name: str = "demo") -> None:
        self.root = root
        self.keys = keys
        self.docs: dict[str, dict[str, Any]] = {}  # repository path -> document
        self.raw: dict[str, bytes] = {}  # repository path -> exact bytes (keys, hand-made files)
        self.signers_of: dict[str, list[GpgKey]] = {}  # release path -> who signs it on write()
        self.approvers_of: dict[str, list[GpgKey]] = {}  # rollout/withdrawal path -> approvers on write()
        self.release_signers: list[GpgKey] = []
        self.approver_keys: list[GpgKey] = []
        self.fleet = self.docs["fleet.yaml"] = {"apiVersion": API, "kind": "Fleet", "name": name}
        # Trust-root versions (trust/root/<N>.yaml), oldest first. The last one is the live one that
        # add_signer/add_approver and tests edit (``self.trust``); rotate() freezes it and starts the
        # next. Root keys sign on write(): a threshold of the previous version's and of their own.
        self.root_keys: list[GpgKey] = []  # keys the builder can sign trust-root versions with
        self.root_signers_of: dict[int, list[GpgKey]] = {}  # version -> who signs it on write()
        self.trust_versions: list[dict[str, Any]] = [
            {
                "apiVersion": API,
                "kind": "TrustRoot",
                "fleet": name,
                "version": 1,
                "expires": TRUST_EXPIRES,
                "root": {
                    "threshold": 1,
                    "keys": [{"fingerprint": PLACEHOLDER_ROOT, "name": "placeholder root"}],
                },
                "controller": [{"fingerprint": PLACEHOLDER_CONTROLLER, "name": "controller"}],
                "release_signers": {
                    "threshold": 1,
                    "keys": [{"fingerprint": PLACEHOLDER_SIGNER, "name": "placeholder signer"}],
                },
                "approvers": [],
                "approvals": {"staging": 0, "canary": 1, "production": 2},
            }
        ]
        if keys is not None:
            root = self.use_root_key(keys.key("root"))
            self.trust["root"]["keys"] = self.key_refs(root)
            self.trust["release_signers"]["keys"] = []
            self.add_signer(keys.key("release-bot"))
            self.add_approver(keys.key("alice"))
            self.add_approver(keys.key("bob"))
            controller = keys.key("controller")
            self.add_key_file(controller)
            self.trust["controller"] = self.key_refs(controller)

    # --- trust ------------------------------------------------------------------------------------
    def add_key_file(self, key: GpgKey) -> None:
        """Commit ``key``'s public key to ``keys/`` (known, but trusted only if the trust root says so)."""
        self.raw[key.key_file] = key.public

    def add_signer(self, key: GpgKey) -> GpgKey:
        self.add_key_file(key)
        self.release_signers.append(key)
        self.trust["release_signers"]["keys"].append({"fingerprint": key.fingerprint, "name": key.name})
        return key

    def add_approver(self, key: GpgKey) -> GpgKey:
        self.add_key_file(key)
        self.approver_keys.append(key)
        self.trust["approvers"].append({"fingerprint": key.fingerprint, "name": key.name})
        return key

    @property
    def trust(self) -> dict[str, Any]:
        """The live (newest) trust-root version, as a document to edit before write()."""
        return self.trust_versions[-1]

    def use_root_key(self, key: GpgKey) -> GpgKey:
        """Let the builder sign trust-root versions with ``key`` (listing it is the test's choice)."""
        self.add_key_file(key)
        self.root_keys.append(key)
        return key

    def use_root_keys(self, *keys: GpgKey, threshold: int, listed: int | None = None) -> None:
        """Sign trust-root versions with ``keys`` only; version 1 lists the first ``listed`` of them
        (default all) with ``threshold``. The rest can sign what a test hands over as a rotation."""
        self.root_keys.clear()
        for key in keys:
            self.use_root_key(key)
        self.trust["root"] = {"threshold": threshold, "keys": self.key_refs(*keys[:listed])}

    def root_versions(self, upto: int | None = None) -> list[RootVersion]:
        """The trust-root versions as written (1..``upto``), each with its signature files: the
        chain a robot is handed."""
        out = []
        for doc in self.trust_versions:
            n = doc["version"]
            if upto is not None and n > upto:
                break
            folder = self.root / f"{trust_root_path(n)}.d"
            sigs = {f"{trust_root_path(n)}.d/{p.name}": p.read_bytes() for p in sorted(folder.glob("*.asc"))}
            out.append(RootVersion(n, self.read(trust_root_path(n)), sigs))
        return out

    def rotate(self, **changes: Any) -> dict[str, Any]:
        """Freeze the live trust-root version and start version N+1 from it with ``changes``."""
        nxt = copy.deepcopy(self.trust)
        nxt["version"] = self.trust["version"] + 1
        self.trust_versions.append(_apply(nxt, changes))
        return nxt

    @staticmethod
    def key_refs(*keys: GpgKey) -> list[dict[str, str]]:
        return [{"fingerprint": k.fingerprint, "name": k.name} for k in keys]

    def root_signers(self, version: int) -> list[GpgKey]:
        """Who signs ``version`` on write(): a threshold of its predecessor's root keys and of its own."""
        if version in self.root_signers_of:
            return self.root_signers_of[version]
        by_fpr = {k.fingerprint: k for k in self.root_keys}
        wanted: list[GpgKey] = []
        for doc in self.trust_versions[max(version - 2, 0) : version]:
            refs = [by_fpr[r["fingerprint"]] for r in doc["root"]["keys"] if r["fingerprint"] in by_fpr]
            wanted += [k for k in refs[: doc["root"]["threshold"]] if k not in wanted]
        return wanted

    # --- documents --------------------------------------------------------------------------------
    def device(self, device_id: str, **overrides: Any) -> dict[str, Any]:
        doc = {
            "apiVersion": API,
            "kind": "Device",
            "id": device_id,
            "family": "amr",
            "hardware": {"model": "mk2", "revision": 3},
            "site": "berlin",
            "timezone": "Europe/Berlin",
        }
        return self._put(device_path(device_id), _apply(doc, overrides))

    def cohort(
        self, name: str, devices: Iterable[str] = (), *, stage: str = "canary", **overrides: Any
    ) -> dict[str, Any]:
        doc = {"apiVersion": API, "kind": "Cohort", "name": name, "stage": stage, "devices": list(devices)}
        return self._put(cohort_path(name), _apply(doc, overrides))

    def release(
        self,
        app: str,
        version: str,
        *,
        config_schema: Mapping[str, Any] | None = None,
        signers: Iterable[GpgKey] | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """A release with one digest-pinned container image; signed on write() by ``signers``.

        ``signers=None`` means the fleet's first ``threshold`` release signers; ``[]`` leaves it unsigned.
        """
        doc: dict[str, Any] = {
            "apiVersion": API,
            "kind": "Release",
            "app": app,
            "version": version,
            "artifacts": [
                {
                    "kind": "container_image",
                    "name": app,
                    "image": f"registry.fleet.test/{app}@sha256:{image_digest(f'{app}:{version}')}",
                }
            ],
        }
        if config_schema is not None:
            doc["config"] = {"path": f"/etc/{app}/config.yaml", "schema": dict(config_schema)}
        path = release_path(app, version)
        if signers is not None:
            self.signers_of[path] = list(signers)
        return self._put(path, _apply(doc, overrides))

    def rollout(
        self,
        name: str,
        *,
        app: str,
        release: str,
        cohorts: Iterable[str] = (),
        devices: Iterable[str] = (),
        approvers: Iterable[GpgKey] | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """A rollout; approved on write() by ``approvers`` (None: every fleet approver; [] nobody)."""
        targets: dict[str, Any] = {}
        if cohorts:
            targets["cohorts"] = list(cohorts)
        if devices:
            targets["devices"] = list(devices)
        doc: dict[str, Any] = {"apiVersion": API, "kind": "Rollout", "name": name, "app": app}
        doc.update(release=release, targets=targets)
        path = rollout_path(name)
        if approvers is not None:
            self.approvers_of[path] = list(approvers)
        return self._put(path, _apply(doc, overrides))

    def config(
        self, app: str, stem: str = "default", values: Mapping[str, Any] | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """``configs/<app>/<stem>.yaml``; the stem (default, cohort-NAME, device-ID) sets scope and target."""
        scope, _, target = stem.partition("-")
        doc: dict[str, Any] = {"apiVersion": API, "kind": "ConfigInstance", "app": app, "scope": scope}
        if target:
            doc["target"] = target
        doc["values"] = dict(values or {})
        return self._put(config_path(app, stem), _apply(doc, overrides))

    def file(self, path: str, content: bytes | str) -> None:
        """A file with exact content (hand-written YAML, a bad signature, anything)."""
        self.raw[path] = content.encode() if isinstance(content, str) else content

    def remove(self, path: str) -> None:
        """Delete a document, and the signatures next to it (``<path>.d/``) with it."""
        self.docs.pop(path, None)
        self.raw.pop(path, None)
        (self.root / path).unlink(missing_ok=True)
        folder = self.root / f"{path}.d"
        if folder.is_dir():
            for signature in folder.iterdir():
                signature.unlink()
            folder.rmdir()

    def withdrawal(
        self, app: str, version: str, reason: str, *, approvers: Iterable[GpgKey] | None = None
    ) -> dict[str, Any]:
        """A withdrawal; approved on write() by ``approvers`` (None: every fleet approver; [] nobody)."""
        path = withdrawal_path(app, version)
        if approvers is not None:
            self.approvers_of[path] = list(approvers)
        doc = {"apiVersion": API, "kind": "Withdrawal", "app": app, "version": version, "reason": reason}
        return self._put(path, doc)

    def _put(self, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        self.docs[path] = doc
        return doc

    def standard(self) -> FleetRepoBuilder:
        """A small, valid fleet: 4 robots, a canary and a production cohort, nav 1.0.0 with a config
        schema, its default config, and one rollout to both cohorts."""
        for index in range(1, 5):
            self.device(f"amr-00{index}")
        self.cohort("canary", ["amr-001"], stage="canary")
        self.cohort("production", ["amr-002", "amr-003", "amr-004"], stage="production")
        schema = {
            "type": "object",
            "properties": {"max_speed": {"type": "number", "maximum": 2.0}, "map": {"type": "string"}},
            "required": ["max_speed"],
            "additionalProperties": False,
        }
        self.release("nav", "1.0.0", config_schema=schema)
        self.config("nav", "default", {"max_speed": 1.5, "map": "hall-a"})
        self.rollout("nav-1-0-0", app="nav", release="1.0.0", cohorts=["canary", "production"])
        return self

    # --- disk ---------------------------------------------------------------------------------------
    def write(self) -> Path:
        """Write every document and file; sign releases and approve rollouts when keys are set."""
        for path, doc in self.docs.items():
            self._write(path, render(doc))
        for doc in self.trust_versions:
            self._write(trust_root_path(doc["version"]), render(doc))
        for path, data in self.raw.items():
            self._write(path, data)
        if self.keys is not None:
            self._sign_and_approve(self.keys)
        return self.root

    def _sign_and_approve(self, keys: KeyFactory) -> None:
        for doc in self.trust_versions:
            data = self.read(trust_root_path(doc["version"]))
            for key in self.root_signers(doc["version"]):
                self._write(trust_root_signature_path(doc["version"], key.fingerprint), keys.sign(data, key))
        threshold = int(self.trust["release_signers"].get("threshold", 1))
        for path, doc in self.docs.items():
            if doc.get("kind") == "Release":
                data = (self.root / path).read_bytes()
                for key in self.signers_of.get(path, self.release_signers[:threshold]):
                    self.sign_release(doc["app"], doc["version"], key, data=data)
        for path, doc in self.docs.items():
            if doc.get("kind") == "Rollout":
                for key in self.approvers_of.get(path, self.approver_keys):
                    self.approve(doc["name"], key)
            elif doc.get("kind") == "Withdrawal":
                for key in self.approvers_of.get(path, self.approver_keys):
                    self.approve_withdrawal(path, key)

    def sign_release(self, app: str, version: str, key: GpgKey, *, data: bytes | None = None) -> str:
        """Sign the release file as written (or ``data``); returns the signature's path."""
        assert self.keys is not None, "signing needs FleetRepoBuilder(..., keys=shared_keys())"
        body = data if data is not None else (self.root / release_path(app, version)).read_bytes()
        path = release_signature_path(app, version, key.fingerprint)
        self._write(path, self.keys.sign(body, key))
        return path

    def approve(self, rollout: str, key: GpgKey, *, as_fingerprint: str | None = None) -> str:
        """Approve the rollout as written; ``as_fingerprint`` files it under another key's name."""
        assert self.keys is not None, "approving needs FleetRepoBuilder(..., keys=shared_keys())"
        raw = (self.root / rollout_path(rollout)).read_bytes()
        data = parse_strict(raw, rollout_path(rollout)).data
        rel = release_path(data["app"], data["release"])
        release_file = self.root / rel
        release_bytes = release_file.read_bytes() if release_file.exists() else b""
        folder = self.root / "configs" / data["app"]
        configs = (
            {f"configs/{data['app']}/{f.name}": f.read_bytes() for f in sorted(folder.glob("*.yaml"))}
            if folder.is_dir()
            else {}
        )
        payload = approval_payload(rollout, data, rel, release_bytes, config_root(configs))
        signature = self.keys.sign(payload, key)
        path = approval_path(rollout, as_fingerprint or key.fingerprint)
        self._write(path, signature)
        return path

    def approve_withdrawal(self, path: str, key: GpgKey) -> str:
        """Approve the withdrawal file ``path`` as written; returns the approval's path."""
        assert self.keys is not None, "approving needs FleetRepoBuilder(..., keys=shared_keys())"
        data = parse_strict(self.read(path), path).data
        rel = release_path(data["app"], data["version"])
        release = self.root / rel
        payload = withdrawal_payload(
            path, self.read(path), rel, release.read_bytes() if release.exists() else b""
        )
        target = f"{path}.d/{key.fingerprint}.asc"
        self._write(target, self.keys.sign(payload, key))
        return target

    def _write(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def line_of(self, path: str, needle: str) -> int:
        """1-based number of the first line of the written file ``path`` that contains ``needle``."""
        for number, line in enumerate(self.read(path).decode().splitlines(), start=1):
            if needle in line:
                return number
        raise AssertionError(f"{needle!r} not in {path}")

    def snapshot(self) -> dict[str, bytes]:
        files, problems = read_directory(self.root)
        assert not problems, problems
        return files

    def validate(self, base: Mapping[str, bytes] | str | None = None) -> ValidationResult:
        """Validate what is on disk; ``base`` is a snapshot or a git ref."""
        if isinstance(base, str):
            return validate_work_tree(self.root, base)
        return validate_snapshot(self.snapshot(), base)

    # --- git ----------------------------------------------------------------------------------------
    def git(self, *args: str) -> str:
        env = {**os.environ, **GIT_IDENTITY, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(self.root)}
        done = subprocess.run(
            ["git", *args], cwd=self.root, env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def git_init(self, branch: str = "main") -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", branch)
        self.git("config", "commit.gpgsign", "false")

    def commit(self, message: str = "change") -> str:
        """Write, stage everything and commit; returns the commit id."""
        self.write()
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


def committed_standard_fleet(root: Path, keys: KeyFactory, message: str = "a new fleet") -> FleetRepoBuilder:
    """The standard fleet (4 robots, nav 1.0.0 signed and approved) at ``root``, committed on main."""
    built = FleetRepoBuilder(root, keys=keys).standard()
    built.git_init()
    built.commit(message)
    return built
