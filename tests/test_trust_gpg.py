"""The gpg adapter against real GnuPG: what verifies, what is refused, and failing closed."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetcd.errors import InvalidContent, SetupError
from fleetcd.reasons import Reason
from fleetcd.trust.gpg import SIGNATURE_MAX_BYTES, Keyring, Signer
from tests.gpgkeys import GpgKey, KeyFactory

DATA = b"apiVersion: fleetcd.dev/v1\nkind: Release\napp: nav\nversion: 1.2.0\n"


@pytest.fixture
def alice(keys: KeyFactory) -> GpgKey:
    return keys.key("alice")


@pytest.fixture
def bob(keys: KeyFactory) -> GpgKey:
    return keys.key("bob")


@pytest.fixture
def keyring(keys: KeyFactory, alice: GpgKey, bob: GpgKey) -> Iterator[Keyring]:
    with keys.keyring([alice, bob]) as ring:
        yield ring


def test_valid_signature_verifies_with_the_primary_fingerprint(
    keys: KeyFactory, keyring: Keyring, alice: GpgKey
) -> None:
    result = keyring.verify_detached(DATA, keys.sign(DATA, alice))
    assert result.valid
    assert result.reason is None
    assert result.fingerprint == alice.fingerprint


def test_signature_by_a_signing_subkey_is_attributed_to_its_primary_key(keys: KeyFactory) -> None:
    sam = keys.subkey_key("sam")
    with keys.keyring([sam]) as ring:
        result = ring.verify_detached(DATA, keys.sign(DATA, sam))
    assert result.valid
    assert result.fingerprint == sam.fingerprint


def test_signature_over_different_bytes_is_rejected(
    keys: KeyFactory, keyring: Keyring, alice: GpgKey
) -> None:
    result = keyring.verify_detached(DATA + b"notes: swapped\n", keys.sign(DATA, alice))
    assert not result.valid
    assert result.reason is Reason.SIGNATURE_INVALID
    assert "different bytes" in result.detail


def test_signature_by_a_key_missing_from_the_repo_keys_is_untrusted(keys: KeyFactory, alice: GpgKey) -> None:
    mallory = keys.key("mallory")
    with keys.keyring([alice]) as ring:
        result = ring.verify_detached(DATA, keys.sign(DATA, mallory))
    assert not result.valid
    assert result.reason is Reason.SIGNATURE_UNTRUSTED
    assert mallory.fingerprint in result.detail


def test_signature_by_expired_key_is_rejected(keys: KeyFactory) -> None:
    olga = keys.expired_key("olga")
    with keys.keyring([olga]) as ring:
        result = ring.verify_detached(DATA, keys.sign(DATA, olga))
    assert not result.valid
    assert result.reason is Reason.KEY_EXPIRED
    assert result.fingerprint == olga.fingerprint


def test_signature_by_revoked_key_is_rejected(keys: KeyFactory) -> None:
    rita = keys.revoked_key("rita")
    with keys.keyring([rita]) as ring:
        result = ring.verify_detached(DATA, keys.sign(DATA, rita))
    assert not result.valid
    assert result.reason is Reason.KEY_REVOKED


@pytest.mark.parametrize(
    "revocation_file", ["keys/0-rita-revoked.asc", "keys/z-rita-revoked.asc"], ids=["before-key", "after-key"]
)
def test_revocation_in_its_own_file_applies_whatever_the_file_order(
    keys: KeyFactory, revocation_file: str
) -> None:
    rita = keys.revoked_key("rita")
    key_only = keys.signer.export_public(rita.fingerprint)
    with Keyring.from_armored({"keys/rita.asc": key_only, revocation_file: rita.revocation}) as ring:
        result = ring.verify_detached(DATA, keys.sign(DATA, rita))
    assert result.reason is Reason.KEY_REVOKED


def _oversized(keys: KeyFactory, alice: GpgKey, bob: GpgKey) -> bytes:
    return keys.sign(DATA, alice) + b"\n" * SIGNATURE_MAX_BYTES


def _two_signers_one_packet_stream(keys: KeyFactory, alice: GpgKey, bob: GpgKey) -> bytes:
    return keys.raw_sign(DATA, alice, bob)


def _two_armored_blocks(keys: KeyFactory, alice: GpgKey, bob: GpgKey) -> bytes:
    return keys.sign(DATA, alice) + keys.sign(DATA, bob)


def _binary_concatenation(keys: KeyFactory, alice: GpgKey, bob: GpgKey) -> bytes:
    return keys.raw_sign(DATA, alice, "--no-armor") + keys.raw_sign(DATA, alice, "--no-armor")


def _text_mode(keys: KeyFactory, alice: GpgKey, bob: GpgKey) -> bytes:
    return keys.raw_sign(DATA, alice, "--textmode")


def _sha1(keys: KeyFactory, alice: GpgKey, bob: GpgKey) -> bytes:
    return keys.raw_sign(DATA, alice, "--digest-algo", "SHA1")


def _inline_signed_message(keys: KeyFactory, alice: GpgKey, bob: GpgKey) -> bytes:
    return keys.gpg("--local-user", alice.fingerprint, "--sign", "--armor", data=b"other content")


MALFORMED: dict[str, Callable[[KeyFactory, GpgKey, GpgKey], bytes]] = {
    "empty": lambda keys, alice, bob: b"",
    "garbage": lambda keys, alice, bob: b"this is not a signature\n",
    "public-key-instead": lambda keys, alice, bob: alice.public,
    "inline-signed-message": _inline_signed_message,
    "over-64KiB": _oversized,
    "two-signers-in-one-block": _two_signers_one_packet_stream,
    "two-armored-blocks": _two_armored_blocks,
    "two-binary-signatures": _binary_concatenation,
    "text-mode": _text_mode,
    "sha1-digest": _sha1,
}


@pytest.mark.parametrize("make", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_or_ambiguous_signature_file_is_rejected(
    keys: KeyFactory,
    keyring: Keyring,
    alice: GpgKey,
    bob: GpgKey,
    make: Callable[[KeyFactory, GpgKey, GpgKey], bytes],
) -> None:
    result = keyring.verify_detached(DATA, make(keys, alice, bob))
    assert not result.valid
    assert result.reason is Reason.SIGNATURE_INVALID
    assert result.detail


def test_keyring_lists_primary_fingerprints_of_the_repo_keys(
    keys: KeyFactory, alice: GpgKey, bob: GpgKey
) -> None:
    sam = keys.subkey_key("sam")
    with keys.keyring([alice, bob, sam]) as ring:
        assert ring.fingerprints() == {alice.fingerprint, bob.fingerprint, sam.fingerprint}


def test_keyring_ignores_the_users_own_gnupghome(
    keys: KeyFactory, alice: GpgKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GNUPGHOME", str(keys.home))  # holds alice's secret and public key
    with Keyring.from_armored({}) as ring:
        result = ring.verify_detached(DATA, keys.sign(DATA, alice))
        assert ring.fingerprints() == set()
    assert result.reason is Reason.SIGNATURE_UNTRUSTED


def test_keyring_home_is_removed_on_close(keys: KeyFactory, alice: GpgKey) -> None:
    ring = keys.keyring([alice])
    home = ring._home
    assert home.is_dir()
    ring.close()
    ring.close()
    assert not home.exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"not a key at all\n", "not an armored OpenPGP public key"),
        (b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n", "no OpenPGP"),
        (b"x" * (2 * 1024 * 1024), "at most"),
    ],
    ids=["plain-text", "empty-armor", "too-large"],
)
def test_bad_key_file_is_invalid_content_naming_the_file(
    alice: GpgKey, content: bytes, expected: str
) -> None:
    with pytest.raises(InvalidContent) as caught:
        Keyring.from_armored({alice.key_file: alice.public, "keys/broken.asc": content})
    [diagnostic] = caught.value.diagnostics
    assert diagnostic.file == "keys/broken.asc"
    assert expected in diagnostic.message


def test_committed_secret_key_is_refused(keys: KeyFactory, alice: GpgKey) -> None:
    secret = keys.gpg("--armor", "--export-secret-keys", alice.fingerprint)
    with pytest.raises(InvalidContent, match=r"keys/alice\.asc: .*SECRET key"):
        Keyring.from_armored({"keys/alice.asc": secret})


def test_missing_gpg_binary_fails_closed(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="gpg_unavailable"):
        Keyring.from_armored({}, gpgbinary=str(tmp_path / "no-such-gpg"))
    with pytest.raises(SetupError, match="gpg_unavailable"):
        Signer(tmp_path / "home", gpgbinary=str(tmp_path / "no-such-gpg"))


def test_hung_gpg_is_killed_and_fails_closed(keys: KeyFactory, alice: GpgKey, tmp_path: Path) -> None:
    # Answers the version probe like gpg, then hangs on real work.
    fake = tmp_path / "gpg"
    fake.write_text(
        '#!/bin/sh\nfor a in "$@"; do [ "$a" = --list-config ] && exec gpg "$@"; done\nexec sleep 600\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(SetupError, match="did not finish"):
        Keyring.from_armored({alice.key_file: alice.public}, gpgbinary=str(fake), timeout_seconds=1.0)


def test_signer_refuses_a_key_it_does_not_hold(keys: KeyFactory, alice: GpgKey) -> None:
    with pytest.raises(SetupError, match="no secret key"):
        keys.signer.sign_detached(DATA, "0" * 40)


def test_signer_generates_distinct_keys_it_can_sign_with(tmp_path: Path) -> None:
    with Signer(tmp_path / "home") as signer:
        first = signer.generate_key("Controller", "controller@fleet.test", expire="1y")
        second = signer.generate_key("Operator", "operator@fleet.test")
        assert signer.secret_fingerprints() == sorted([first, second])
        signature = signer.sign_detached(DATA, second)
        with Keyring.from_armored({"keys/op.asc": signer.export_public(second)}) as ring:
            result = ring.verify_detached(DATA, signature)
    assert (result.valid, result.fingerprint) == (True, second)
    assert os.stat(tmp_path / "home").st_mode & 0o077 == 0
