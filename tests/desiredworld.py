"""The robot's desired-state trust chain as tests publish and verify it (tests/test_desired_verify*.py).

:class:`World` holds real gpg keys (the controller, an intruder, two release signers, two approvers),
the robot's pinned :class:`~fleetcd.desired.TrustAnchors` and a keyring; it publishes bundles the
way the controller does (``build_signed_bundles``, one signature) and verifies them the way the agent
does (``verify_bundle``). :func:`sign_leaves`, :func:`signed_root` and :func:`signed_bundle` are a
controller that misbehaves: whatever bytes it likes, validly signed by the pinned controller key.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from fleetcd.compat import UTC
from fleetcd.desired import (
    Bundle,
    BundleConfigFile,
    BundleDeployment,
    BundleRejected,
    SignedRoot,
    TrustAnchors,
    VerifiedBundle,
    build_signed_bundles,
    build_tree,
    canonical_bytes,
    leaf_data,
    verify_bundle,
)
from fleetcd.desired.configset import ConfigSet, config_root, merge_values
from fleetcd.loading.documents import load_document
from fleetcd.models import ConfigInstance, Rollout, Stage
from fleetcd.trust.approval import approval_payload
from fleetcd.trust.gpg import Keyring
from tests.gpgkeys import GpgKey, KeyFactory, shared_keys

ISSUED = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
EXPIRES = ISSUED + timedelta(days=7)
NOW = ISSUED + timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FLEET = "acme"
SERIAL = 7
RELEASE_PATH = "releases/navigator/1.2.0.yaml"
ROLLOUT_NAME = "navigator-1-2"
ROLLOUT_PATH = f"rollouts/{ROLLOUT_NAME}.yaml"
RELEASE = f"""\
apiVersion: fleetcd.dev/v1
kind: Release
app: navigator
version: "1.2.0"
artifacts:
  - kind: container_image
    name: navigator
    image: registry.fleet.test/navigator@sha256:{"a" * 64}
config:
  path: config/navigator.yaml
  schema:
    type: object
    properties:
      max_speed:
        type: number
        maximum: 2
    additionalProperties: false
""".encode()
ROLLOUT = f"""\
apiVersion: fleetcd.dev/v1
kind: Rollout
name: {ROLLOUT_NAME}
app: navigator
release: "1.2.0"
targets:
  cohorts: [canary]
""".encode()
ROLLOUT_WIDENED = ROLLOUT.replace(b"[canary]", b"[canary, production]")
DEFAULT_CONFIG = "configs/navigator/default.yaml"


def config_file(stem: str, values: dict[str, Any]) -> bytes:
    scope, _, target = stem.partition("-")
    head = f"apiVersion: fleetcd.dev/v1\nkind: ConfigInstance\napp: navigator\nscope: {scope}\n"
    body = "".join(f"  {k}: {v}\n" for k, v in values.items())
    return (head + (f"target: {target}\n" if target else "") + "values:\n" + body).encode()


CONFIGS = {DEFAULT_CONFIG: config_file("default", {"max_speed": 1.5})}
ROLLOUT_PAUSED = ROLLOUT + b"paused: true\n"


@dataclass(frozen=True)
class Delivery:
    """What one robot fetches: its bundle, the shared root and signature, its proof."""

    device: str
    bundle: bytes
    root: bytes
    signature: bytes
    proof: bytes


@dataclass
class World:
    factory: KeyFactory
    keys: dict[str, GpgKey]
    keyring: Keyring
    anchors: TrustAnchors
    good_signatures: dict[str, str] = field(default_factory=dict)  # both release signers
    good_approvals: dict[str, str] = field(default_factory=dict)  # both approvers

    def release_signatures(
        self, *signers: str, data: bytes = RELEASE, path: str = RELEASE_PATH
    ) -> dict[str, str]:
        return {
            f"{path}.d/{self.keys[s].fingerprint}.asc": self.factory.sign(data, self.keys[s]).decode()
            for s in signers
        }

    def approvals(
        self, *approvers: str, rollout: bytes = ROLLOUT, configs: dict[str, bytes] = CONFIGS
    ) -> dict[str, str]:
        data = load_document(ROLLOUT_PATH, rollout, Rollout).data
        payload = approval_payload(ROLLOUT_NAME, data, RELEASE_PATH, RELEASE, config_root(configs))
        return {
            f"approvals/{ROLLOUT_NAME}/{self.keys[a].fingerprint}.asc": self.factory.sign(
                payload, self.keys[a]
            ).decode()
            for a in approvers
        }

    def deployment(self, **overrides: Any) -> BundleDeployment:
        fields: dict[str, Any] = {
            "deployment_id": "d-0001",
            "rollout": ROLLOUT_NAME,
            "generation": 1,
            "app": "navigator",
            "version": "1.2.0",
            "action": "deploy",
            "release_path": RELEASE_PATH,
            "release_b64": b64(RELEASE),
            "release_signatures": self.good_signatures,
            "rollout_path": ROLLOUT_PATH,
            "rollout_b64": b64(ROLLOUT),
            "approvals": self.good_approvals,
            "stage": Stage.CANARY,
            "approvals_required": 1,
            **config_fields(CONFIGS),
        }
        fields.update(overrides)
        return BundleDeployment(**fields)

    def with_configs(
        self, configs: dict[str, bytes], applying: Sequence[str] | None = None, **overrides: Any
    ) -> BundleDeployment:
        """A deployment of the config set ``configs`` (``applying``: the robot's layers), approved."""
        fields = {
            **config_fields(configs, applying),
            "approvals": self.approvals("approver1", configs=configs),
        }
        return self.deployment(**{**fields, **overrides})

    def publish(
        self,
        devices: Sequence[str] = ("robot-a", "robot-b"),
        *,
        deployment: BundleDeployment | None = None,
        serial: int = SERIAL,
        signer: str = "controller",
        fleet: str = FLEET,
        sign_calls: list[bytes] | None = None,
    ) -> dict[str, Delivery]:
        deployments = [deployment or self.deployment()]
        bundles = {d: bundle(d, serial, deployments) for d in devices}

        def sign(data: bytes) -> bytes:
            if sign_calls is not None:
                sign_calls.append(data)
            return self.factory.sign(data, self.keys[signer])

        root, signature, per_device = build_signed_bundles(fleet, bundles, serial, ISSUED, EXPIRES, sign)
        return {d: Delivery(d, b, root, signature, p) for d, (b, p) in per_device.items()}

    def verify(self, delivery: Delivery, *, device: str | None = None, **kwargs: Any) -> VerifiedBundle:
        args: dict[str, Any] = {"last_serial": None, "now": NOW}
        args.update(kwargs)
        return verify_bundle(
            device or delivery.device,
            delivery.bundle,
            delivery.root,
            delivery.signature,
            delivery.proof,
            self.anchors,
            args.pop("last_serial"),
            args.pop("now"),
            self.keyring,
            **args,
        )

    def rejected(self, delivery: Delivery, **kwargs: Any) -> BundleRejected:
        with pytest.raises(BundleRejected) as caught:
            self.verify(delivery, **kwargs)
        return caught.value


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def config_fields(configs: dict[str, bytes], applying: Sequence[str] | None = None) -> dict[str, Any]:
    """Bundle fields for the config set ``configs`` and the layers ``applying`` (default: all)."""
    configset = ConfigSet(configs)
    layers = list(applying if applying is not None else sorted(configs))
    values = [load_document(p, configs[p], ConfigInstance).model.values for p in layers]
    return {
        "config": merge_values(values) if layers else None,
        "config_root": configset.root,
        "config_count": configset.count,
        "config_files": [
            BundleConfigFile(path=p, b64=b64(configs[p]), proof=configset.proof(p)) for p in layers
        ],
    }


def bundle(device: str, serial: int, deployments: list[BundleDeployment]) -> Bundle:
    return Bundle(
        format="fleetcd.dev/bundle/v1",
        device=device,
        serial=serial,
        issued_at=ISSUED,
        expires_at=EXPIRES,
        trust_version=1,
        deployments=deployments,
    )


@pytest.fixture(scope="module")
def world(gpg_available: str) -> Iterator[World]:
    factory = shared_keys()
    names = ["controller", "intruder", "signer1", "signer2", "approver1", "approver2"]
    keys = {name: factory.key(name) for name in names}
    anchors = TrustAnchors(
        controller=frozenset({keys["controller"].fingerprint}),
        release_signers=frozenset({keys["signer1"].fingerprint, keys["signer2"].fingerprint}),
        release_threshold=2,
        approvers=frozenset({keys["approver1"].fingerprint, keys["approver2"].fingerprint}),
        approvals_required={Stage.STAGING: 0, Stage.CANARY: 1, Stage.PRODUCTION: 2},
        fleet=FLEET,
    )
    # The robot's keyring holds the intruder's key too: trust must come from the pins, not the ring.
    with factory.keyring(keys.values()) as keyring:
        w = World(factory, keys, keyring, anchors)
        w.good_signatures = w.release_signatures("signer1", "signer2")
        w.good_approvals = w.approvals("approver1", "approver2")
        yield w


@pytest.fixture(scope="module")
def delivered(world: World) -> dict[str, Delivery]:
    return world.publish()


def sign_leaves(world: World, leaves: dict[str, bytes | Bundle]) -> dict[str, Delivery]:
    """A controller that misbehaves: it puts whatever bundle (a model, or exact bytes) it likes
    under a device's leaf, in a root of serial SERIAL it validly signs."""
    encoded = {d: b if isinstance(b, bytes) else canonical_bytes(b) for d, b in sorted(leaves.items())}
    tree = build_tree([leaf_data(d, hashlib.sha256(data).hexdigest()) for d, data in encoded.items()])
    root = canonical_bytes(
        SignedRoot(
            format="fleetcd.dev/root/v1",
            serial=SERIAL,
            issued_at=ISSUED,
            expires_at=EXPIRES,
            merkle_root=tree.root,
            leaves=tree.size,
            fleet=FLEET,
        )
    )
    signature = world.factory.sign(root, world.keys["controller"])
    return {
        d: Delivery(d, data, root, signature, canonical_bytes(tree.proof(i)))
        for i, (d, data) in enumerate(encoded.items())
    }


def signed_root(world: World, root: bytes) -> Delivery:
    """robot-a's delivery under ``root`` (exact bytes), validly signed by the pinned controller."""
    good = world.publish()["robot-a"]
    return replace(good, root=root, signature=world.factory.sign(root, world.keys["controller"]))


def signed_bundle(world: World, raw: bytes) -> Delivery:
    """robot-a's bundle as exactly ``raw``, included in a validly signed root of serial SERIAL."""
    return sign_leaves(world, {"robot-a": raw})["robot-a"]
