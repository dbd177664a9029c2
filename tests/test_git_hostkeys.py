"""The controller's host key check inside libgit2 (fleetcd.git.hostkeys): a decision table, then the C
callback fed hand-built ``git_cert_hostkey`` structures through pygit2's own ffi.

The callback is what stands between a hijacked network and the fleet's git server, so every odd
input must end in a refusal with a reason: a key that is not pinned, no key at all, a structure
whose SHA-256 does not match its key (a libgit2 whose layout changed), an implausible key length,
and any exception. Only an explicit ``insecure_accept_any_host_key`` accepts anything.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from pygit2.ffi import C, ffi

from fleetcd.git.hostkeys import HostKeyCheck, HostKeyPolicy, fingerprint

KEY = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))
OTHER = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(1, 33))
PIN = fingerprint(KEY)
ACCEPT, REJECT = 0, -17

# --- decide -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "seen", "valid", "accepted"),
    [
        (HostKeyPolicy(pinned_sha256=(PIN,)), PIN, False, True),  # pinned: known_hosts does not matter
        (HostKeyPolicy(pinned_sha256=(PIN,)), PIN, True, True),
        (HostKeyPolicy(pinned_sha256=(PIN,)), fingerprint(OTHER), True, False),  # valid but not pinned
        (HostKeyPolicy(pinned_sha256=(PIN,)), None, True, False),  # TLS or no key: a pin cannot match
        (HostKeyPolicy(pinned_sha256=(fingerprint(OTHER), PIN)), PIN, False, True),  # key rotation
        (HostKeyPolicy(), PIN, True, True),  # no pin: known_hosts / CA store decides
        (HostKeyPolicy(), PIN, False, False),
        (HostKeyPolicy(), None, False, False),
        (HostKeyPolicy(insecure_accept_any_host_key=True), None, False, True),
        (
            HostKeyPolicy(pinned_sha256=(PIN,), insecure_accept_any_host_key=True),
            fingerprint(OTHER),
            False,
            True,
        ),
    ],
    ids=[
        "pinned-unknown-to-known-hosts",
        "pinned-and-valid",
        "valid-but-not-pinned",
        "pinned-without-key",
        "second-pin",
        "known-hosts-valid",
        "known-hosts-invalid",
        "nothing",
        "insecure",
        "insecure-beats-pin",
    ],
)
def test_decide(policy: HostKeyPolicy, seen: str | None, valid: bool, accepted: bool) -> None:
    check = HostKeyCheck(policy)
    assert check.decide(seen, valid, "git.fleet") is accepted
    assert check.seen == seen
    assert (check.rejection is None) is accepted


def test_a_refusal_names_the_key_seen_the_host_and_the_pins() -> None:
    check = HostKeyCheck(HostKeyPolicy(pinned_sha256=(PIN,)))
    check.decide(fingerprint(OTHER), True, "git.fleet")
    assert check.rejection is not None
    assert fingerprint(OTHER) in check.rejection and "git.fleet" in check.rejection and PIN in check.rejection


def test_an_unknown_host_without_pins_says_how_to_fix_it() -> None:
    check = HostKeyCheck(HostKeyPolicy())
    check.decide(PIN, False, "git.fleet")
    assert check.rejection is not None and "known_hosts" in check.rejection and "pin" in check.rejection


# --- the C callback, fed hand-built git_cert_hostkey structures ---------------------------------------


class Cert:
    """A git_cert_hostkey laid out as libgit2 >= 1.1 does on LP64 (see fleetcd.git.hostkeys)."""

    def __init__(
        self, key: bytes | None, *, raw: bool = True, sha256: bytes | None = None, length: int | None = None
    ):
        self.memory = ffi.new("unsigned char[96]")
        self.key = ffi.new("char[]", key or b"\x00")
        ints = ffi.cast("int *", self.memory)
        ints[0] = C.GIT_CERT_HOSTKEY_LIBSSH2
        kinds = (1 << 3 if raw else 0) | (1 << 2 if sha256 is not None or key is not None else 0)
        ints[1] = kinds
        digest = sha256 if sha256 is not None else hashlib.sha256(key or b"").digest()
        ffi.buffer(self.memory + 44, 32)[:] = digest
        ffi.cast("char **", self.memory + 80)[0] = self.key if key is not None else ffi.NULL
        ffi.cast("size_t *", self.memory + 88)[0] = len(key or b"") if length is None else length

    def pointer(self) -> Any:
        return ffi.cast("git_cert *", self.memory)


def call(check: HostKeyCheck, cert: Any, valid: int = 0, host: bytes | None = b"git.fleet") -> int:
    return int(check._check(cert, valid, ffi.new("char[]", host) if host is not None else ffi.NULL, ffi.NULL))


@pytest.fixture
def pinned() -> HostKeyCheck:
    return HostKeyCheck(HostKeyPolicy(pinned_sha256=(PIN,)))


def test_the_pinned_key_in_a_real_structure_is_accepted(pinned: HostKeyCheck) -> None:
    assert call(pinned, Cert(KEY).pointer()) == ACCEPT
    assert pinned.seen == PIN and pinned.rejection is None


def test_another_key_in_a_real_structure_is_refused(pinned: HostKeyCheck) -> None:
    assert call(pinned, Cert(OTHER).pointer()) == REJECT
    assert pinned.seen == fingerprint(OTHER)
    assert pinned.rejection is not None and "git.fleet" in pinned.rejection


def test_a_structure_whose_sha256_does_not_match_its_key_is_refused(pinned: HostKeyCheck) -> None:
    forged = Cert(KEY, sha256=hashlib.sha256(OTHER).digest())
    assert call(pinned, forged.pointer()) == REJECT
    assert pinned.rejection is not None and "SHA-256 mismatch" in pinned.rejection


def test_a_structure_without_the_raw_key_is_refused(pinned: HostKeyCheck) -> None:
    assert call(pinned, Cert(KEY, raw=False).pointer()) == REJECT
    assert pinned.rejection is not None and "raw host key" in pinned.rejection


@pytest.mark.parametrize("length", [0, 1 << 16, 1 << 40], ids=["empty", "64k", "huge"])
def test_an_implausible_key_length_is_refused_without_reading_it(pinned: HostKeyCheck, length: int) -> None:
    assert call(pinned, Cert(KEY, length=length).pointer()) == REJECT
    assert pinned.rejection is not None and "implausible" in pinned.rejection


def test_a_null_key_pointer_is_refused(pinned: HostKeyCheck) -> None:
    assert call(pinned, Cert(None).pointer()) == REJECT


def test_no_certificate_at_all_is_refused_when_pinned_and_judged_by_validity_otherwise() -> None:
    pinned = HostKeyCheck(HostKeyPolicy(pinned_sha256=(PIN,)))
    assert call(pinned, ffi.NULL, valid=1) == REJECT
    unpinned = HostKeyCheck(HostKeyPolicy())
    assert call(unpinned, ffi.NULL, valid=1) == ACCEPT
    assert call(unpinned, ffi.NULL, valid=0) == REJECT


def test_a_missing_host_name_is_shown_as_a_question_mark(pinned: HostKeyCheck) -> None:
    assert call(pinned, Cert(OTHER).pointer(), host=None) == REJECT
    assert pinned.rejection is not None and " of ? " in pinned.rejection


def test_the_c_callback_is_made_once_and_kept_alive(pinned: HostKeyCheck) -> None:
    first = pinned.c_callback()
    assert pinned.c_callback() is first
