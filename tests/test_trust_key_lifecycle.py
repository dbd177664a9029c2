"""Signing keys over their life, verified by fleetcd/trust/gpg.py with real GnuPG.

A release signer's key is born, signs, gets a new signing subkey, has a subkey revoked, expires and is
renewed. What a fleet must see at each point: a signature counts only while the (sub)key that made it
is usable *now* — made before an expiry or a revocation is not enough — and it counts again when a
renewed key file is committed. The keyring reports the earliest expiry of any key or subkey, since a
cached verdict must not outlive it. Key files are what an operator commits, ``gpg --armor --export``
(docs/signing-and-approval.md), unless a test says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from fleetcd.compat import UTC
from fleetcd.errors import InvalidContent, SetupError
from fleetcd.reasons import Reason
from fleetcd.trust.gpg import Keyring
from tests.gpgkeys import KeyFactory, shared_keys

DATA = b"apiVersion: fleetcd.dev/v1\nkind: Release\napp: navstack\nversion: 1.4.0\n"
BORN = "20200101T000000"
WHILE_VALID = "20200601T000000"  # inside the 1-year life of keys born at BORN


@pytest.fixture(scope="session")
def keys(gpg_available: str) -> KeyFactory:
    return shared_keys()


@dataclass
class Signer:
    """One person's key in the shared test home: a certify-only primary and its signing subkeys."""

    keys: KeyFactory
    fingerprint: str

    def sign(self, data: bytes = DATA, *, at: str | None = None, sig_expire: str | None = None) -> bytes:
        options = ["--faked-system-time", at] if at else []
        options += ["--default-sig-expire", sig_expire] if sig_expire else []
        return self.keys.gpg(
            *options, "--local-user", self.fingerprint, "--detach-sign", "--armor", data=data
        )

    def key_file(self) -> bytes:
        return self.keys.gpg("--armor", "--export", self.fingerprint)

    def subkeys(self) -> list[str]:
        listing = self.keys.gpg("--with-colons", "--list-keys", self.fingerprint).decode()
        found = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
        return found[1:]

    def add_signing_subkey(self, life: str = "2y", *, at: str | None = None) -> str:
        options = ["--faked-system-time", at] if at else []
        self.keys.gpg(*options, "--quick-add-key", self.fingerprint, "ed25519", "sign", life)
        return self.subkeys()[-1]

    def revoke_subkey(self, number: int) -> None:
        """Revoke subkey ``number`` (1 = the oldest) as ``gpg --edit-key`` does it by hand."""
        script = f"key {number}\nrevkey\ny\n0\n\ny\nsave\n".encode()
        self.keys.gpg("--command-fd", "0", "--edit-key", self.fingerprint, data=script)

    def renew(self, life: str = "2y") -> None:
        self.keys.gpg("--quick-set-expire", self.fingerprint, life)
        for subkey in self.subkeys():  # "*" would pass over subkeys that have already expired
            self.keys.gpg("--quick-set-expire", self.fingerprint, life, subkey)


_made: dict[str, Signer] = {}


def person(keys: KeyFactory, name: str, *, born: str | None = None, life: str = "never") -> Signer:
    """A certify-only primary (``life``) created at ``born``, without subkeys yet; one per name."""
    if name not in _made:
        email = f"{name}@fleet.test"
        options = ["--faked-system-time", born] if born else []
        keys.gpg(*options, "--quick-gen-key", f"{name.title()} <{email}>", "ed25519", "cert", life)
        listing = keys.gpg("--with-colons", "--list-keys", f"<{email}>").decode()
        fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        _made[name] = Signer(keys, fingerprint)
    return _made[name]


def keyring(files: dict[str, bytes]) -> Keyring:
    return Keyring.from_armored(files)


# --- rotation of signing subkeys -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rotated(keys: KeyFactory) -> tuple[Signer, bytes, bytes]:
    """A 2020 primary whose first signing subkey lived one year (and signed while valid), and a new
    subkey added now: (the signer, the old subkey's signature, the new subkey's signature)."""
    signer = person(keys, "rotor", born=BORN)
    signer.add_signing_subkey("1y", at=BORN)
    old = signer.sign(at=WHILE_VALID)
    signer.add_signing_subkey("2y")
    return signer, old, signer.sign()


def test_a_signature_by_the_new_subkey_counts_for_the_primary(rotated: tuple[Signer, bytes, bytes]) -> None:
    signer, _, new = rotated
    with keyring({"keys/rotor.asc": signer.key_file()}) as ring:
        result = ring.verify_detached(DATA, new)
    assert result.valid
    assert result.fingerprint == signer.fingerprint  # fleet.yaml lists primaries, never subkeys


def test_a_signature_by_an_expired_subkey_made_while_it_was_valid_is_refused(
    rotated: tuple[Signer, bytes, bytes],
) -> None:
    signer, old, _ = rotated
    with keyring({"keys/rotor.asc": signer.key_file()}) as ring:
        result = ring.verify_detached(DATA, old)
    assert not result.valid
    assert result.reason is Reason.KEY_EXPIRED
    assert result.fingerprint == signer.fingerprint


def test_a_minimal_export_drops_the_expired_subkey_and_its_signatures_are_still_refused(
    keys: KeyFactory, rotated: tuple[Signer, bytes, bytes]
) -> None:
    # `fleetcd keys` exports minimal key files: the expired subkey is not in them at all, so its
    # signature has no key in keys/ — refused either way, never valid.
    signer, old, new = rotated
    with keyring({"keys/rotor.asc": keys.signer.export_public(signer.fingerprint)}) as ring:
        assert ring.verify_detached(DATA, new).valid
        result = ring.verify_detached(DATA, old)
    assert not result.valid
    assert result.reason in (Reason.KEY_EXPIRED, Reason.SIGNATURE_UNTRUSTED)


def test_the_keyring_expires_with_its_first_subkey_even_when_the_primary_never_does(
    rotated: tuple[Signer, bytes, bytes],
) -> None:
    signer, _, _ = rotated
    with keyring({"keys/rotor.asc": signer.key_file()}) as ring:
        earliest = ring.earliest_expiry()
    assert earliest is not None
    assert earliest.year == 2020  # the first subkey's, not the second's, and not "never"


# --- revocation of one subkey ---------------------------------------------------------------------------


def test_a_revoked_signing_subkey_is_refused_while_its_sibling_still_counts(keys: KeyFactory) -> None:
    signer = person(keys, "revsub")
    signer.add_signing_subkey("2y")
    before = signer.sign()
    signer.add_signing_subkey("2y")
    stolen = _sign_with_subkey(signer, 2)  # made before the revocation, by the laptop later stolen
    signer.revoke_subkey(2)
    with keyring({"keys/revsub.asc": signer.key_file()}) as ring:
        by_revoked = ring.verify_detached(DATA, stolen)
        by_sibling = ring.verify_detached(DATA, before)
    assert not by_revoked.valid
    assert by_revoked.reason is Reason.KEY_REVOKED
    assert by_revoked.fingerprint == signer.fingerprint
    assert by_sibling.valid


def _sign_with_subkey(signer: Signer, number: int) -> bytes:
    # A '!' after a subkey fingerprint makes gpg use exactly that subkey.
    subkey = signer.subkeys()[number - 1]
    return signer.keys.gpg("--local-user", f"{subkey}!", "--detach-sign", "--armor", data=DATA)


def test_a_key_file_from_before_the_revocation_still_verifies_so_the_new_file_must_be_committed(
    keys: KeyFactory,
) -> None:
    # The revocation lives in the key file: until the updated file is on main, nothing knows.
    signer = person(keys, "revlate")
    signer.add_signing_subkey("2y")
    stale_file = signer.key_file()
    signature = signer.sign()
    signer.revoke_subkey(1)
    with keyring({"keys/revlate.asc": stale_file}) as ring:
        assert ring.verify_detached(DATA, signature).valid
    with keyring({"keys/revlate.asc": signer.key_file()}) as ring:
        assert ring.verify_detached(DATA, signature).reason is Reason.KEY_REVOKED


# --- expiry and renewal -----------------------------------------------------------------------------------


def test_a_signature_made_before_the_key_expired_is_refused_after(keys: KeyFactory) -> None:
    signer = person(keys, "lapsed", born=BORN, life="1y")
    signer.add_signing_subkey("1y", at=BORN)
    signature = signer.sign(at=WHILE_VALID)
    with keyring({"keys/lapsed.asc": signer.key_file()}) as ring:
        result = ring.verify_detached(DATA, signature)
        earliest = ring.earliest_expiry()
    assert result.reason is Reason.KEY_EXPIRED
    assert earliest is not None and earliest < datetime.now(UTC)


def test_renewing_an_expired_key_makes_its_old_signatures_count_again(keys: KeyFactory) -> None:
    signer = person(keys, "renewed", born=BORN, life="1y")
    signer.add_signing_subkey("1y", at=BORN)
    signature = signer.sign(at=WHILE_VALID)
    expired_file = signer.key_file()
    signer.renew("2y")
    with keyring({"keys/renewed.asc": signer.key_file()}) as ring:
        result = ring.verify_detached(DATA, signature)
        earliest = ring.earliest_expiry()
    assert result.valid
    assert result.fingerprint == signer.fingerprint
    assert earliest is not None and earliest > datetime.now(UTC) + timedelta(days=365)
    with keyring({"keys/renewed.asc": expired_file}) as ring:  # main still holds the old file
        assert ring.verify_detached(DATA, signature).reason is Reason.KEY_EXPIRED


def test_a_signature_that_itself_has_expired_is_refused(keys: KeyFactory) -> None:
    signer = person(keys, "shortsig", born=BORN)
    signer.add_signing_subkey("never", at=BORN)
    signature = signer.sign(at=WHILE_VALID, sig_expire="1d")
    with keyring({"keys/shortsig.asc": signer.key_file()}) as ring:
        result = ring.verify_detached(DATA, signature)
    assert not result.valid
    assert result.reason is Reason.SIGNATURE_INVALID


# --- key files that lie ------------------------------------------------------------------------------------


def test_a_revocation_for_a_key_not_in_keys_is_refused_naming_its_file(keys: KeyFactory) -> None:
    rita = keys.revoked_key("rita")
    alice = keys.key("alice")
    with pytest.raises(InvalidContent) as caught:
        Keyring.from_armored({"keys/alice.asc": alice.public, "keys/rita-revoked.asc": rita.revocation})
    assert [d.file for d in caught.value.diagnostics] == ["keys/rita-revoked.asc"]


def test_one_file_holding_two_keys_brings_both_in_and_each_signs_as_itself(keys: KeyFactory) -> None:
    # A key file may hold more than one key; which of them is trusted is fleet.yaml's business.
    alice, bob = keys.key("alice"), keys.key("bob")
    with keyring({"keys/team.asc": alice.public + b"\n" + bob.public}) as ring:
        assert {alice.fingerprint, bob.fingerprint} <= ring.fingerprints()
        assert ring.verify_detached(DATA, keys.sign(DATA, bob)).fingerprint == bob.fingerprint


def test_a_key_file_claiming_a_trusted_signers_name_signs_only_as_its_own_fingerprint(
    keys: KeyFactory, tmp_path: Path
) -> None:
    # A pull request adds keys/alice-new.asc: a key whose user ID copies alice's name and email.
    # Trust is by fingerprint alone (fleet.yaml and the trust root), so its signatures are the
    # impostor's, whatever the user ID says.
    alice = keys.key("alice")
    impostor_home = KeyFactory(tmp_path / "impostor")
    try:
        fingerprint = impostor_home.signer.generate_key("Alice", alice.email)
        signature = impostor_home.signer.sign_detached(DATA, fingerprint)
        files = {
            "keys/alice.asc": alice.public,
            "keys/alice-new.asc": impostor_home.signer.export_public(fingerprint),
        }
        with keyring(files) as ring:
            result = ring.verify_detached(DATA, signature)
            assert ring.fingerprints() == {alice.fingerprint, fingerprint}
    finally:
        impostor_home.close()
    assert result.valid
    assert result.fingerprint == fingerprint != alice.fingerprint


def test_the_same_key_committed_twice_is_one_key(keys: KeyFactory) -> None:
    alice = keys.key("alice")
    with keyring({"keys/alice.asc": alice.public, "keys/alice-copy.asc": alice.public}) as ring:
        assert ring.fingerprints() == {alice.fingerprint}
        assert ring.verify_detached(DATA, keys.sign(DATA, alice)).fingerprint == alice.fingerprint


# --- signing with a key past its life ------------------------------------------------------------------


def test_signing_with_an_expired_key_is_a_setup_error_not_a_signature_robots_would_refuse(
    keys: KeyFactory,
) -> None:
    # The controller or an operator with a lapsed key must hear it at once, not ship signatures.
    olga = keys.expired_key("olga")
    with pytest.raises(SetupError, match=olga.fingerprint):
        keys.signer.sign_detached(DATA, olga.fingerprint)


def test_signing_when_every_signing_subkey_is_revoked_is_a_setup_error(keys: KeyFactory) -> None:
    signer = person(keys, "allrevoked")
    signer.add_signing_subkey("2y")
    signer.revoke_subkey(1)
    with pytest.raises(SetupError, match=signer.fingerprint):
        keys.signer.sign_detached(DATA, signer.fingerprint)
