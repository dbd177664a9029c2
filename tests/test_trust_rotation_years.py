"""Years of trust-root rotations against a model: the walk ends exactly where the first bad link is.

A long-lived fleet rotates its root keys many times: keys join and leave, thresholds go up and down,
and each new version must be signed by a threshold of the previous version's root keys *and* of its
own (:mod:`fleetcd.trust.rootchain`). Here seeded chains of a dozen versions are made with real gpg
keys; at each version the signers are a random subset of the old and new root keys, sometimes
short of a threshold, sometimes with an outsider's signature added. The model says how far a chain
is good: the first version whose signers miss either threshold breaks it. Then:

* :func:`~fleetcd.trust.rootchain.walk` from version 1 reaches the last good version when the chain
  is good to the end, and raises :class:`~fleetcd.trust.rootchain.TrustChainRejected` naming the
  first bad version's file otherwise; the prefix up to the break walks to the version before it;
* a robot pinned at any good version (offline since) reaches the same end over the same chain, and
  a robot pinned after the break is not affected by it;
* the chain handed over in any order walks the same.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import pytest

from fleetcd.layout import trust_root_path
from fleetcd.loading.emit import dump_yaml
from fleetcd.models.trustroot import RootKeys
from fleetcd.trust.gpg import Keyring
from fleetcd.trust.rootchain import (
    Pin,
    RootVersion,
    TrustChainRejected,
    verify_first,
    verify_self_signed,
    walk,
)
from tests.gpgkeys import GpgKey, KeyFactory

POOL = 6  # root keys that come and go over the years
VERSIONS = 12
SEEDS = (1, 2, 3, 4, 5, 6)
FLEET = "fleet-of-years"


@pytest.fixture(scope="module")
def pool(keys: KeyFactory) -> list[GpgKey]:
    return [keys.key(f"root-year-{n}") for n in range(POOL)]


@pytest.fixture(scope="module")
def outsider(keys: KeyFactory) -> GpgKey:
    return keys.key("root-outsider")


@pytest.fixture(scope="module")
def keyring(keys: KeyFactory, pool: list[GpgKey], outsider: GpgKey) -> Keyring:
    return keys.keyring([*pool, outsider])


@dataclass(frozen=True)
class Version:
    number: int
    root: list[GpgKey]
    threshold: int
    signers: list[GpgKey]


def document(version: Version, controller: GpgKey) -> bytes:
    refs = [{"name": k.name, "fingerprint": k.fingerprint} for k in version.root]
    doc = {
        "apiVersion": "fleetcd.dev/v1",
        "kind": "TrustRoot",
        "fleet": FLEET,
        "version": version.number,
        "expires": f"{2026 + version.number}-01-01T00:00:00Z",
        "root": {"threshold": version.threshold, "keys": refs},
        "controller": [{"name": controller.name, "fingerprint": controller.fingerprint}],
        "release_signers": {
            "threshold": 1,
            "keys": [{"name": controller.name, "fingerprint": controller.fingerprint}],
        },
    }
    return dump_yaml(doc).encode()


def plan_chain(pool: list[GpgKey], outsider: GpgKey, rng: random.Random) -> list[Version]:
    """Random rotations; the signers of each version are drawn so that most links hold."""
    chain: list[Version] = []
    root = rng.sample(pool, rng.randint(1, 3))
    chain.append(Version(1, root, rng.randint(1, len(root)), list(root)))
    for number in range(2, VERSIONS + 1):
        before = chain[-1]
        keep = [k for k in before.root if rng.random() < 0.6]
        join = [k for k in pool if k not in before.root and rng.random() < 0.3]
        root = (keep + join) or [rng.choice(pool)]
        threshold = rng.randint(1, min(len(root), 3))
        wanted = set(rng.sample(before.root, before.threshold)) | set(rng.sample(root, threshold))
        if rng.random() < 0.12:  # one signature short somewhere
            wanted.discard(rng.choice(sorted(wanted, key=lambda k: k.name)))
        signers = sorted(wanted, key=lambda k: k.name)
        if rng.random() < 0.2:
            signers.append(outsider)  # counts for nothing, harms nothing
        chain.append(Version(number, root, threshold, signers))
    return chain


def good_until(chain: list[Version]) -> int:
    """The last version the model says a walk from version 1 reaches."""
    for before, version in itertools.pairwise(chain):
        signed = set(version.signers)
        if (
            len(signed & set(before.root)) < before.threshold
            or len(signed & set(version.root)) < version.threshold
        ):
            return before.number
    return chain[-1].number


def materialise(keys: KeyFactory, chain: list[Version], controller: GpgKey) -> list[RootVersion]:
    out = []
    for version in chain:
        raw = document(version, controller)
        folder = f"{trust_root_path(version.number)}.d"
        signatures = {f"{folder}/{k.fingerprint}.asc": keys.sign(raw, k) for k in version.signers}
        out.append(RootVersion(version.number, raw, signatures))
    return out


def pin_at(version: Version) -> Pin:
    refs = [{"name": k.name, "fingerprint": k.fingerprint} for k in version.root]
    return Pin(
        version.number, RootKeys.model_validate({"threshold": version.threshold, "keys": refs}), fleet=FLEET
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_a_walk_over_years_of_rotations_stops_exactly_at_the_first_bad_link(
    keys: KeyFactory, keyring: Keyring, pool: list[GpgKey], outsider: GpgKey, seed: int
) -> None:
    rng = random.Random(seed)
    chain = plan_chain(pool, outsider, rng)
    expected = good_until(chain)
    versions = materialise(keys, chain, pool[0])
    assert chain[0].threshold <= len(set(chain[0].signers) & set(chain[0].root))
    start = verify_self_signed(versions[0], keyring)

    if expected == VERSIONS:
        assert walk(start, versions, keyring).version == VERSIONS
    else:
        with pytest.raises(TrustChainRejected) as raised:
            walk(start, versions, keyring)
        assert raised.value.diagnostics[0].file == trust_root_path(expected + 1)
        assert raised.value.diagnostics[0].field == "signatures"
    assert walk(start, versions[:expected], keyring).version == expected

    shuffled = list(versions[:expected])
    rng.shuffle(shuffled)
    assert walk(start, shuffled, keyring).version == expected

    for held in rng.sample(chain[:expected], min(3, expected)):  # robots offline since a good version
        trusted = verify_first(pin_at(held), versions[held.number - 1], keyring)
        assert walk(trusted, versions[:expected], keyring).version == expected
    if expected + 1 < VERSIONS:  # a robot that already holds a version past the break
        after = chain[expected + 1]
        try:
            trusted = verify_first(pin_at(after), versions[after.number - 1], keyring)
        except TrustChainRejected:
            return  # its own version lacks its own threshold: the pin itself is refused
        reach = good_until(chain[after.number - 1 :])  # the model, from the robot's version on
        if reach == VERSIONS:
            assert walk(trusted, versions, keyring).version == VERSIONS
        else:
            with pytest.raises(TrustChainRejected) as raised:
                walk(trusted, versions, keyring)
            assert raised.value.diagnostics[0].file == trust_root_path(reach + 1)


def test_the_model_sees_both_outcomes_across_the_seeds(pool: list[GpgKey], outsider: GpgKey) -> None:
    ends = {good_until(plan_chain(pool, outsider, random.Random(seed))) for seed in SEEDS}
    assert VERSIONS in ends and any(end < VERSIONS for end in ends), ends
