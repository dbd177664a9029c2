"""A detached signature or the bytes it covers, damaged in seeded random ways, never verifies.

The releases, approvals and trust roots of a fleet are judged by
:meth:`fleetcd.trust.gpg.Keyring.verify_detached` with real gpg. Whoever can commit to the
repository can commit any bytes as a ``.asc``: a signature with one base64 character changed, cut
short, with its CRC line removed, as a binary packet, two signatures in one file, another key's
signature, or the right signature over a document edited by one byte. For every such case the
verdict must be a :class:`~fleetcd.trust.gpg.VerifyResult` (never an exception), ``valid`` only
for the untouched signature over the untouched bytes and only naming its signer, and ``reason``
set exactly when it is not valid.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator

import pytest

from fleetcd.reasons import Reason
from fleetcd.trust.gpg import Keyring, VerifyResult
from tests.gpgkeys import GpgKey, KeyFactory

SEED = 20_261_208
SIGNATURE_VALUE_BYTES = 60  # an ed25519 signature packet ends with its two 32-byte MPIs (r, s)
DOCUMENT = (
    b"apiVersion: fleetcd.dev/v1\nkind: Release\napp: navstack\nversion: 1.2.0\n"
    b"artifacts:\n  - kind: app_tarball\n    sha256: " + b"a" * 64 + b"\n"
)


@pytest.fixture(scope="module")
def alice(keys: KeyFactory) -> GpgKey:
    return keys.key("alice")


@pytest.fixture(scope="module")
def mallory(keys: KeyFactory) -> GpgKey:
    return keys.key("mallory")


@pytest.fixture(scope="module")
def keyring(keys: KeyFactory, alice: GpgKey) -> Iterator[Keyring]:
    ring = keys.keyring([alice])
    yield ring
    ring.close()


@pytest.fixture(scope="module")
def signature(keys: KeyFactory, alice: GpgKey) -> bytes:
    return keys.sign(DOCUMENT, alice)


def armor_parts(armored: bytes) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(header lines, base64 body lines, footer lines: the CRC line and the END line)."""
    lines = armored.splitlines()
    start = lines.index(b"") + 1  # the blank line after the armor headers
    end = next(i for i, line in enumerate(lines) if line.startswith((b"=", b"-----END")))
    return lines[:start], lines[start:end], lines[end:]


def judged(result: VerifyResult) -> VerifyResult:
    """The contract every verdict keeps, valid or not."""
    assert isinstance(result, VerifyResult)
    assert (result.reason is None) == result.valid, result
    assert result.detail
    return result


def test_the_untouched_signature_verifies_as_its_signer(
    keyring: Keyring, signature: bytes, alice: GpgKey
) -> None:
    result = judged(keyring.verify_detached(DOCUMENT, signature))
    assert result.valid and result.fingerprint == alice.fingerprint


def damaged_signatures(signature: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    head, body, foot = armor_parts(signature)
    packet = base64.b64decode(b"".join(body))
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for n in range(8):
        row = rng.randrange(len(body))
        line = bytearray(body[row])
        at = rng.randrange(len(line))
        line[at] = rng.choice([c for c in alphabet if c != line[at]])
        yield (
            f"base64 char {n}",
            b"\n".join([*head, *body[:row], bytes(line), *body[row + 1 :], *foot]) + b"\n",
        )
    for n in range(6):
        damaged = bytearray(packet)
        at = len(damaged) - 1 - rng.randrange(SIGNATURE_VALUE_BYTES)
        damaged[at] ^= 1 << rng.randrange(8)
        encoded = base64.encodebytes(bytes(damaged)).rstrip(b"\n").split(b"\n")
        yield f"signature value bit {n} (armor without CRC)", b"\n".join([*head, *encoded, foot[-1]]) + b"\n"
    for n in range(4):
        cut = rng.randrange(1, len(signature) - 80)  # inside the base64 body or before it
        yield f"cut at {cut} ({n})", signature[:cut]
    for n in range(3):
        cut = rng.randrange(1, len(packet))
        yield f"binary packet cut at {cut} ({n})", packet[:cut]
    yield "body lines dropped", b"\n".join([*head, *body[1:], *foot]) + b"\n"
    yield "only the armor lines", b"\n".join([head[0], b"", foot[-1]]) + b"\n"
    yield "random bytes", bytes(rng.randrange(256) for _ in range(200))
    yield "the document itself", DOCUMENT
    yield "nul bytes", b"\x00" * 64


@pytest.mark.parametrize("seed", range(3))
def test_a_damaged_signature_never_verifies_and_never_raises(
    keyring: Keyring, signature: bytes, seed: int
) -> None:
    rng = random.Random(SEED + seed)
    for what, damaged in damaged_signatures(signature, rng):
        result = judged(keyring.verify_detached(DOCUMENT, damaged))
        assert not result.valid, f"{what} verified"
        assert result.reason in (Reason.SIGNATURE_INVALID, Reason.SIGNATURE_UNTRUSTED), (what, result)


def test_a_bit_anywhere_in_the_packet_verifies_only_as_the_signer_or_not_at_all(
    keyring: Keyring, signature: bytes, alice: GpgKey
) -> None:
    # OpenPGP leaves the unhashed subpackets (the issuer key id among them) outside what is signed,
    # so a flip there may still verify: harmless, as the verdict names the signer from the hashed
    # fingerprint and approvals count one per fingerprint. Anything else must be refused.
    head, body, foot = armor_parts(signature)
    packet = base64.b64decode(b"".join(body))
    rng = random.Random(SEED)
    refused = 0
    for _ in range(24):
        damaged = bytearray(packet)
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        encoded = base64.encodebytes(bytes(damaged)).rstrip(b"\n").split(b"\n")
        result = judged(keyring.verify_detached(DOCUMENT, b"\n".join([*head, *encoded, foot[-1]]) + b"\n"))
        assert not result.valid or result.fingerprint == alice.fingerprint, result
        refused += not result.valid
    assert refused >= 16  # the unhashed area is a small part of the packet


def damaged_documents(rng: random.Random) -> Iterator[tuple[str, bytes]]:
    for n in range(6):
        data = bytearray(DOCUMENT)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        yield f"bit flip {n}", bytes(data)
    yield "one byte appended", DOCUMENT + b"\n"
    yield "last byte dropped", DOCUMENT[:-1]
    yield "CRLF line ends", DOCUMENT.replace(b"\n", b"\r\n")
    yield "trailing spaces", DOCUMENT.replace(b"\n", b" \n")
    yield "empty", b""


def test_the_right_signature_over_edited_bytes_is_a_bad_signature_naming_no_one_as_good(
    keyring: Keyring, signature: bytes
) -> None:
    for what, data in damaged_documents(random.Random(SEED)):
        result = judged(keyring.verify_detached(data, signature))
        assert not result.valid, f"{what} verified"
        assert result.reason is Reason.SIGNATURE_INVALID, (what, result)
        assert "different bytes" in result.detail, what


def test_a_signature_by_a_key_outside_the_keyring_is_untrusted_whatever_it_signs(
    keys: KeyFactory, keyring: Keyring, mallory: GpgKey
) -> None:
    forged = keys.sign(DOCUMENT, mallory)
    result = judged(keyring.verify_detached(DOCUMENT, forged))
    assert not result.valid and result.reason is Reason.SIGNATURE_UNTRUSTED
    assert mallory.fingerprint[-16:] in result.detail  # the issuer is named, so the operator can look it up


def test_two_signatures_in_one_file_are_refused_even_when_both_are_good(
    keys: KeyFactory, keyring: Keyring, signature: bytes, alice: GpgKey, mallory: GpgKey
) -> None:
    for second in (signature, keys.sign(DOCUMENT, mallory)):
        for joined in (signature + second, second + b"\n" + signature):
            result = judged(keyring.verify_detached(DOCUMENT, joined))
            assert not result.valid and result.reason is Reason.SIGNATURE_INVALID
    together = keys.raw_sign(DOCUMENT, alice, mallory)  # one armor block, two signature packets
    result = judged(keyring.verify_detached(DOCUMENT, together))
    assert not result.valid and result.reason is Reason.SIGNATURE_INVALID
    assert "2 signatures" in result.detail


def test_harmless_armor_edits_keep_the_same_signer(keyring: Keyring, signature: bytes, alice: GpgKey) -> None:
    # What an editor or a git checkout may do to a .asc file; gpg may or may not accept each, but
    # whatever it accepts must still be alice's signature over exactly these bytes.
    variants = [
        signature.replace(b"\n", b"\r\n"),
        signature + b"\n\n",
        b"\n" + signature,
        signature.rstrip(b"\n"),
        signature.replace(b"SIGNATURE", b"PUBLIC KEY BLOCK"),  # gpg reads the packet, not the label
    ]
    for variant in variants:
        result = judged(keyring.verify_detached(DOCUMENT, variant))
        assert not result.valid or result.fingerprint == alice.fingerprint
    assert judged(keyring.verify_detached(DOCUMENT, signature + b"\n")).valid
