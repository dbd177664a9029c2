"""The delivery step writes the bytes it always wrote, built faster (issue 12).

``bundle.json`` and the content digest come from one encoding of the bundle
(:func:`controller.delivery.inputs.encode_bundle`), and each robot's blobs, tree and commit are
hashed in Python (:mod:`fleetcd.git.rawobjects`). Both must give, byte for byte, what the
previous path gave: :func:`fleetcd.desired.canonical_bytes` of the whole bundle, the sha256 of the
canonical JSON of the bundle without serial and timestamps, and libgit2's commit of the same
files. Checked on a real controller's bundles (real git and gpg), on bundles carrying config
values JSON escapes differently (unicode, line separators, control characters, big numbers), and
on a robot's whole desired-state commit; a robot (:class:`tests.sim.robots.PinningRobot`) accepts
what was written.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.delivery.inputs import content_digest, encode_bundle
from controller.delivery.write import CONTROLLER_IDENTITY, delivery_ref, write_desired_state
from fleetcd.compat import UTC
from fleetcd.desired import BUNDLE_FILE, PROOF_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE, Bundle, canonical_bytes
from fleetcd.desired.chain import TRUST_FILE
from fleetcd.git.objects import commit, read_blob, write_tree
from tests.gitrepos import bare_repo
from tests.gpgkeys import KeyFactory
from tests.sim.robots import PinningRobot
from tests.sim.world import CANARY, PRODUCTION, STAGING, make_world

ROBOTS = sorted(STAGING + CANARY + PRODUCTION)


def content_digest_as_before(bundle: Bundle) -> str:
    """The content digest as it was first written: the whole dump, volatile fields dropped, encoded."""
    data = bundle.model_dump(mode="json", by_alias=True)
    kept = {k: v for k, v in data.items() if k not in ("serial", "issued_at", "expires_at")}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, keys: KeyFactory) -> dict[str, bytes]:
    """Every robot's bundle.json as a real controller wrote it, and each robot accepts its own."""
    world = make_world(tmp_path_factory.mktemp("world"), keys)
    world.reconcile()
    repo = pygit2.Repository(str(world.server))
    out = {}
    for device in ROBOTS:
        data = read_blob(repo, delivery_ref(device, namespaces=True), BUNDLE_FILE)
        assert data is not None
        out[device] = data
        PinningRobot(world, device).poll()
    state = world.state()
    for device, data in out.items():
        recorded = state.devices[device].desired
        assert recorded is not None
        assert recorded.content_sha256 == content_digest_as_before(Bundle.model_validate_json(data))
    return out


def test_a_served_bundle_is_encoded_to_its_own_bytes_and_digest(served: dict[str, bytes]) -> None:
    for data in served.values():
        bundle = Bundle.model_validate_json(data)
        encoded, digest = encode_bundle(bundle)
        assert encoded == data == canonical_bytes(bundle)
        assert digest == content_digest(bundle) == content_digest_as_before(bundle)


def _value(rng: random.Random, depth: int = 0) -> Any:
    texts = ["é", "\u2028", "\u2029", "\x01", '"q"', "\\", "😀", "a/b", "\t\n", "", "ключ", "\ud7ff"]
    kind = rng.randrange(6 if depth < 3 else 4)
    if kind == 0:
        return rng.choice(texts) + rng.choice(texts)
    if kind == 1:
        return rng.choice([0, -1, 2**53 - 1, -(2**53) + 1, 7])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.choice(texts)
    if kind == 4:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice(texts) + str(n): _value(rng, depth + 1) for n in range(rng.randrange(0, 4))}


@pytest.mark.parametrize("seed", range(20))
def test_config_values_json_escapes_differently_are_encoded_as_the_whole_bundle_encodes_them(
    served: dict[str, bytes], seed: int
) -> None:
    """Keys and values that sort or escape unusually (non-ASCII, U+2028, quotes, control
    characters), nested, in a served bundle's deployments: the same bytes and digest either way."""
    rng = random.Random(seed)
    data = json.loads(served[rng.choice(ROBOTS)])
    for deployment in data["deployments"]:
        deployment["config"] = {f"k{n}{rng.choice('éa€')}": _value(rng) for n in range(rng.randrange(1, 5))}
    bundle = Bundle.model_validate_json(json.dumps(data))
    encoded, digest = encode_bundle(bundle)
    assert encoded == canonical_bytes(bundle)
    assert digest == content_digest_as_before(bundle)


def test_a_robots_desired_state_commit_is_the_one_libgit2_wrote_for_the_same_files(
    served: dict[str, bytes], tmp_path: Path
) -> None:
    """The whole write, with and without the encoded bundles handed in: the same commits, each
    the commit libgit2 writes for the robot's five files, under the same name, time and message."""
    bundles = {d: Bundle.model_validate_json(data) for d, data in served.items()}
    serial = next(iter(bundles.values())).serial
    issued, expires = bundles[ROBOTS[0]].issued_at, bundles[ROBOTS[0]].expires_at
    results = []
    for name, encoded in (("given", {d: encode_bundle(b)[0] for d, b in bundles.items()}), ("made", None)):
        repo = pygit2.Repository(str(bare_repo(tmp_path / f"{name}.git")))
        results.append(
            write_desired_state(
                repo,
                bundles,
                fleet="faults",
                serial=serial,
                issued_at=issued,
                expires_at=expires,
                sign=lambda data: (
                    b"-----BEGIN PGP SIGNATURE-----\n" + hashlib.sha256(data).digest().hex().encode()
                ),
                namespaces=True,
                trust=b'{"trust": 1}',
                encoded=encoded,
            )
        )
        for device, oid in results[-1].commits.items():
            files = {
                name: read_blob(repo, oid, name)
                for name in (BUNDLE_FILE, PROOF_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE, TRUST_FILE)
            }
            assert files[BUNDLE_FILE] == served[device]
            tree = write_tree(repo, {k: v for k, v in files.items() if v is not None})
            message = f"fleetcd: desired state of {device}, serial {serial}"
            assert commit(repo, None, tree, message, [], CONTROLLER_IDENTITY, issued) == oid
            assert repo.get(oid).commit_time == int(issued.astimezone(UTC).timestamp())
    assert results[0].commits == results[1].commits
