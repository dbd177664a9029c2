"""Attacks on the trust-root chain a robot walks (fleetcd/trust/rootchain.py), with real gpg keys.

A compromised git host or controller hands the robot a chain: with a version missing, with the pin's
version swapped, too long, with a huge document or a flood of signature files, or bytes the root
keys really signed that are no trust root. Each must be refused naming the file and field, with the
reason the robot reports, and the caps must hold before any signature is checked (gpg is not run on
a 10 MB document). Nothing after a broken link counts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetcd.layout import trust_root_path
from fleetcd.models.trustroot import RootKeys
from fleetcd.reasons import Reason
from fleetcd.trust.gpg import Keyring, VerifyResult
from fleetcd.trust.rootchain import (
    MAX_CHAIN_VERSIONS,
    MAX_ROOT_DOCUMENT_BYTES,
    MAX_ROOT_SIGNATURES,
    Pin,
    RootVersion,
    TrustChainRejected,
    TrustedRoot,
    parse_trusted,
    verify_first,
    verify_next,
    verify_self_signed,
    walk,
)
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import GpgKey, KeyFactory


class CountingVerifier:
    """The real keyring, counting how often gpg is asked: caps must refuse before it is."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self.calls = 0

    def verify_detached(self, data: bytes, signature: bytes) -> VerifyResult:
        self.calls += 1
        return self.keyring.verify_detached(data, signature)


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    b = FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()
    b.use_root_keys(keys.key("root-1"), keys.key("root-2"), threshold=2)
    return b


def pin_of(fleet: FleetRepoBuilder, version: int = 1) -> Pin:
    refs = fleet.key_refs(*fleet.root_keys)
    return Pin(version, RootKeys.model_validate({"threshold": 2, "keys": refs}), fleet="demo")


def signed_by(keys: KeyFactory, version: int, raw: bytes, *signers: GpgKey) -> RootVersion:
    """``raw`` as trust-root ``version``, really signed by ``signers`` (files named after them)."""
    path = trust_root_path(version)
    return RootVersion(version, raw, {f"{path}.d/{k.fingerprint}.asc": keys.sign(raw, k) for k in signers})


def where(caught: pytest.ExceptionInfo[TrustChainRejected]) -> tuple[Reason, str, str | None]:
    (diagnostic,) = caught.value.diagnostics
    return caught.value.reason, diagnostic.file, diagnostic.field


@pytest.fixture
def three(fleet: FleetRepoBuilder, keys: KeyFactory) -> tuple[FleetRepoBuilder, list[RootVersion]]:
    fleet.rotate()
    fleet.rotate()
    fleet.write()
    return fleet, fleet.root_versions()


def test_a_chain_with_a_version_left_out_is_refused_and_nothing_after_the_gap_counts(
    three: tuple[FleetRepoBuilder, list[RootVersion]], keys: KeyFactory
) -> None:
    """An attacker drops version 2 (which, say, removed a leaked signer) and hands over 1 and 3."""
    fleet, (v1, _, v3) = three
    with keys.keyring(fleet.root_keys) as keyring:
        held = verify_first(pin_of(fleet), v1, keyring)
        with pytest.raises(TrustChainRejected) as caught:
            walk(held, [v3], keyring)
    assert where(caught) == (Reason.TRUST_ROOT_VERSION, trust_root_path(3), "version")
    assert "cannot follow version 1" in caught.value.diagnostics[0].message


def test_a_chain_handed_out_of_order_is_walked_in_version_order(
    three: tuple[FleetRepoBuilder, list[RootVersion]], keys: KeyFactory
) -> None:
    fleet, (v1, v2, v3) = three
    with keys.keyring(fleet.root_keys) as keyring:
        held = verify_first(pin_of(fleet), v1, keyring)
        assert walk(held, [v3, v1, v2], keyring).version == 3


def test_a_robot_pinned_at_version_two_refuses_version_one_offered_as_its_start(
    three: tuple[FleetRepoBuilder, list[RootVersion]], keys: KeyFactory
) -> None:
    fleet, (v1, v2, _) = three
    with keys.keyring(fleet.root_keys) as keyring:
        with pytest.raises(TrustChainRejected) as caught:
            verify_first(pin_of(fleet, version=2), v1, keyring)
        assert verify_first(pin_of(fleet, version=2), v2, keyring).version == 2
    assert where(caught) == (Reason.TRUST_ROOT_VERSION, trust_root_path(1), "version")


def test_a_version_renamed_to_skip_ahead_is_refused_by_what_the_file_says(
    three: tuple[FleetRepoBuilder, list[RootVersion]], keys: KeyFactory
) -> None:
    """Version 2's genuinely signed bytes served as version 2 of a robot holding 1 pass; the same bytes
    offered as version 3 to a robot holding 2 are refused: the file says 2."""
    fleet, (v1, v2, _) = three
    with keys.keyring(fleet.root_keys) as keyring:
        held = walk(verify_first(pin_of(fleet), v1, keyring), [v2], keyring)
        renamed = RootVersion(
            3, v2.raw, {k.replace("/2.yaml", "/3.yaml"): s for k, s in v2.signatures.items()}
        )
        with pytest.raises(TrustChainRejected) as caught:
            verify_next(held, renamed, keyring)
    assert where(caught) == (Reason.TRUST_ROOT_VERSION, trust_root_path(3), "version")


def test_a_chain_longer_than_the_cap_is_refused_before_any_signature_is_checked(
    fleet: FleetRepoBuilder, keys: KeyFactory
) -> None:
    fleet.write()
    (v1,) = fleet.root_versions()
    flood = [RootVersion(n, b"x", {}) for n in range(2, MAX_CHAIN_VERSIONS + 3)]
    with keys.keyring(fleet.root_keys) as keyring:
        verifier = CountingVerifier(keyring)
        held = verify_first(pin_of(fleet), v1, verifier)
        before = verifier.calls
        with pytest.raises(TrustChainRejected) as caught:
            walk(held, flood, verifier)
    assert where(caught)[:2] == (Reason.TOO_LARGE, flood[-1].path)
    assert verifier.calls == before, "no gpg run for a chain over the cap"


def test_a_chain_at_the_cap_is_walked(fleet: FleetRepoBuilder, keys: KeyFactory) -> None:
    """The cap counts versions handed over, the held ones included: exactly the cap still walks."""
    fleet.write()
    (v1,) = fleet.root_versions()
    with keys.keyring(fleet.root_keys) as keyring:
        held = verify_first(pin_of(fleet), v1, keyring)
        assert walk(held, [v1] * MAX_CHAIN_VERSIONS, keyring).version == 1


def test_an_oversized_trust_root_document_is_refused_before_gpg_reads_it(
    fleet: FleetRepoBuilder, keys: KeyFactory
) -> None:
    fleet.write()
    (v1,) = fleet.root_versions()
    padded = v1.raw + b"#" * (MAX_ROOT_DOCUMENT_BYTES + 1 - len(v1.raw))
    huge = RootVersion(
        2, padded, {f"{trust_root_path(2)}.d/{k.fingerprint}.asc": b"sig" for k in fleet.root_keys}
    )
    with keys.keyring(fleet.root_keys) as keyring:
        verifier = CountingVerifier(keyring)
        held = verify_first(pin_of(fleet), v1, verifier)
        before = verifier.calls
        with pytest.raises(TrustChainRejected) as caught:
            verify_next(held, huge, verifier)
    assert where(caught) == (Reason.TOO_LARGE, trust_root_path(2), None)
    assert verifier.calls == before


def test_a_flood_of_signature_files_is_refused_before_any_is_verified(
    fleet: FleetRepoBuilder, keys: KeyFactory
) -> None:
    fleet.rotate()
    fleet.write()
    v1, v2 = fleet.root_versions()
    flood = dict(v2.signatures)
    flood.update({f"{trust_root_path(2)}.d/{n:040X}.asc": b"junk" for n in range(MAX_ROOT_SIGNATURES)})
    with keys.keyring(fleet.root_keys) as keyring:
        verifier = CountingVerifier(keyring)
        held = verify_first(pin_of(fleet), v1, verifier)
        before = verifier.calls
        with pytest.raises(TrustChainRejected) as caught:
            verify_next(held, RootVersion(2, v2.raw, flood), verifier)
        assert verifier.calls == before, "no gpg run for any of them"
        assert verify_next(held, v2, verifier).version == 2, "the real signatures alone still count"
    assert where(caught) == (Reason.TOO_LARGE, trust_root_path(2), "signatures")


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        (b"not: [yaml", Reason.YAML_SYNTAX, None),
        (b"apiVersion: fleetcd.dev/v1\nkind: Device\nid: amr-1\n", Reason.WRONG_KIND, "kind"),
        (b"- a list\n- not a document\n", Reason.INVALID, None),
    ],
    ids=["broken-yaml", "another-kind", "a-list"],
)
def test_bytes_the_root_keys_signed_that_are_no_trust_root_are_refused_naming_the_file(
    fleet: FleetRepoBuilder, keys: KeyFactory, raw: bytes, reason: Reason, field: str | None
) -> None:
    """A root key holder signs garbage (a mistake or a tool bug): signatures alone never make it count."""
    fleet.write()
    (v1,) = fleet.root_versions()
    candidate = signed_by(keys, 2, raw, *fleet.root_keys)
    with keys.keyring(fleet.root_keys) as keyring:
        held = verify_first(pin_of(fleet), v1, keyring)
        with pytest.raises(TrustChainRejected) as caught:
            verify_next(held, candidate, keyring)
    assert where(caught) == (reason, trust_root_path(2), field)


def test_a_signed_next_version_with_an_unknown_field_is_refused_naming_the_field(
    fleet: FleetRepoBuilder, keys: KeyFactory
) -> None:
    fleet.write()
    (v1,) = fleet.root_versions()
    raw = v1.raw.replace(b"version: 1", b"version: 2") + b"backdoor: true\n"
    candidate = signed_by(keys, 2, raw, *fleet.root_keys)
    with keys.keyring(fleet.root_keys) as keyring:
        held = verify_first(pin_of(fleet), v1, keyring)
        with pytest.raises(TrustChainRejected) as caught:
            verify_next(held, candidate, keyring)
    assert where(caught)[1:] == (trust_root_path(2), "backdoor")


def test_unsigned_garbage_is_refused_for_its_signatures_not_parsed(
    fleet: FleetRepoBuilder, keys: KeyFactory
) -> None:
    """Signature first: bytes nobody trusted signed are never handed to the YAML parser."""
    fleet.write()
    (v1,) = fleet.root_versions()
    with keys.keyring(fleet.root_keys) as keyring:
        held = verify_first(pin_of(fleet), v1, keyring)
        with pytest.raises(TrustChainRejected) as caught:
            verify_next(held, RootVersion(2, b"not: [yaml", {}), keyring)
    assert where(caught)[1:] == (trust_root_path(2), "signatures")


def test_a_self_signed_first_version_of_another_version_number_is_refused(
    three: tuple[FleetRepoBuilder, list[RootVersion]], keys: KeyFactory
) -> None:
    """The controller starts from version 1 only: a later version presented as the start is refused."""
    fleet, (_, v2, _) = three
    with keys.keyring(fleet.root_keys) as keyring, pytest.raises(TrustChainRejected) as caught:
        verify_self_signed(RootVersion(1, v2.raw, v2.signatures), keyring)
    assert where(caught) == (Reason.TRUST_ROOT_VERSION, trust_root_path(1), "version")


def test_a_held_version_is_parsed_again_and_hashed_over_its_exact_bytes(fleet: FleetRepoBuilder) -> None:
    fleet.write()
    (v1,) = fleet.root_versions()
    held = parse_trusted(v1.raw)
    assert isinstance(held, TrustedRoot) and held.version == 1
    assert held.sha256 == parse_trusted(v1.raw).sha256 != parse_trusted(v1.raw + b"\n").sha256
    with pytest.raises(TrustChainRejected):
        parse_trusted(b"kind: [")
