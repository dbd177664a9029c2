"""``trust.json`` as a hostile server could shape it: what the robot's parser refuses before any gpg runs.

:func:`fleetcd.desired.chain.parse_trust_file` is the robot's first look at bytes a compromised git
server fully controls; :func:`build_trust_file` is the controller's side, which must refuse (stall)
rather than send robots something they would refuse. These are pure functions, so the table runs
without git or gpg: signatures are only carried here, verified later by the root chain.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from fleetcd.desired.chain import (
    MAX_KEY_FILES,
    MAX_TRUST_BYTES,
    TRUST_FILE,
    TRUST_FORMAT,
    TrustFileRejected,
    build_trust_file,
    parse_trust_file,
)
from fleetcd.errors import InvalidContent
from fleetcd.reasons import Reason
from fleetcd.trust.rootchain import MAX_CHAIN_VERSIONS, MAX_ROOT_SIGNATURES, RootVersion

FPR_A = "A" * 40
FPR_B = "B" * 40
ARMOR = "-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----\n"


def version(n: int, body: bytes | None = None, signers: tuple[str, ...] = (FPR_A,)) -> RootVersion:
    raw = body if body is not None else f"version: {n}\n".encode()
    sigs = {f"trust/root/{n}.yaml.d/{fpr}.asc": ARMOR.encode() for fpr in signers}
    return RootVersion(n, raw, sigs)


def good_doc() -> dict[str, Any]:
    """A well-formed trust.json as a dict, to break one field at a time."""
    doc: dict[str, Any] = json.loads(build_trust_file([version(1), version(2)], {"keys/ops.asc": b"KEY"}))
    return doc


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


# --- round trip: what the controller builds is what the robot reads --------------------------------


def test_the_robot_reads_back_exactly_the_versions_signatures_and_keys_the_controller_built() -> None:
    body = b"\x00binary \xff bytes survive base64\n"
    built = build_trust_file(
        [version(3, signers=(FPR_A, FPR_B)), version(1), version(2, body)],
        {"keys/ops.asc": b"OPS", "keys/release-1.asc": b"REL"},
    )
    chain = parse_trust_file(built)
    assert [v.version for v in chain.versions] == [1, 2, 3]  # sorted whatever order it was given in
    assert chain.newest == 3
    assert chain.versions[1].raw == body
    assert sorted(chain.versions[2].signatures) == [
        f"trust/root/3.yaml.d/{FPR_A}.asc",
        f"trust/root/3.yaml.d/{FPR_B}.asc",
    ]
    assert chain.versions[2].signatures[f"trust/root/3.yaml.d/{FPR_B}.asc"] == ARMOR.encode()
    assert dict(chain.keys) == {"keys/ops.asc": b"OPS", "keys/release-1.asc": b"REL"}


def test_the_same_chain_builds_the_same_bytes_whatever_order_it_is_given_in() -> None:
    # every robot is sent these bytes; git stores them once only when they are identical
    keys_ab = {"keys/a.asc": b"A", "keys/b.asc": b"B"}
    keys_ba = {"keys/b.asc": b"B", "keys/a.asc": b"A"}
    first = build_trust_file([version(1), version(2, signers=(FPR_B, FPR_A))], keys_ab)
    second = build_trust_file([version(2, signers=(FPR_A, FPR_B)), version(1)], keys_ba)
    assert first == second


# --- the robot's parser: a decision table of hostile files ----------------------------------------


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        del doc[key]

    return change


def _swap_versions(doc: dict[str, Any]) -> None:
    doc["versions"].reverse()


def _duplicate_version(doc: dict[str, Any]) -> None:
    doc["versions"].append(doc["versions"][-1])


def _foreign_signature(doc: dict[str, Any]) -> None:
    # version 2's signature carried under version 1: it would count toward the wrong document
    doc["versions"][0]["signatures"] = {f"trust/root/2.yaml.d/{FPR_A}.asc": ARMOR}


def _too_many_signatures(doc: dict[str, Any]) -> None:
    doc["versions"][0]["signatures"] = {
        f"trust/root/1.yaml.d/{n:040X}.asc": ARMOR for n in range(MAX_ROOT_SIGNATURES + 1)
    }


def _too_many_keys(doc: dict[str, Any]) -> None:
    doc["keys"] = {f"keys/k{n}.asc": "K" for n in range(MAX_KEY_FILES + 1)}


def _too_many_versions(doc: dict[str, Any]) -> None:
    doc["versions"] = [
        {"version": n, "document_b64": "", "signatures": {}} for n in range(1, MAX_CHAIN_VERSIONS + 2)
    ]


HOSTILE: list[tuple[str, Callable[[dict[str, Any]], None], Reason]] = [
    ("other-format", _set(("format",), "fleetcd.dev/trust-chain/v2"), Reason.BUNDLE_INVALID),
    ("no-versions-key", _drop("versions"), Reason.BUNDLE_INVALID),
    ("empty-versions", _set(("versions",), []), Reason.BUNDLE_INVALID),
    ("unknown-field", _set(("extra",), 1), Reason.BUNDLE_INVALID),
    ("version-zero", _set(("versions", 0, "version"), 0), Reason.BUNDLE_INVALID),
    ("version-as-string", _set(("versions", 0, "version"), "1"), Reason.BUNDLE_INVALID),
    ("version-as-float", _set(("versions", 0, "version"), 1.0), Reason.BUNDLE_INVALID),
    ("version-huge", _set(("versions", 1, "version"), 10**30), Reason.BUNDLE_INVALID),
    ("descending", _swap_versions, Reason.TRUST_ROOT_VERSION),
    ("duplicate-version", _duplicate_version, Reason.TRUST_ROOT_VERSION),
    ("document-not-base64", _set(("versions", 0, "document_b64"), "not base64!"), Reason.BUNDLE_INVALID),
    ("signature-of-another-version", _foreign_signature, Reason.BUNDLE_INVALID),
    (
        "signature-path-escapes",
        _set(("versions", 0, "signatures"), {"trust/root/1.yaml.d/../../keys/x.asc": ARMOR}),
        Reason.BUNDLE_INVALID,
    ),
    (
        "signature-name-not-a-fingerprint",
        _set(("versions", 0, "signatures"), {"trust/root/1.yaml.d/ops.asc": ARMOR}),
        Reason.BUNDLE_INVALID,
    ),
    ("too-many-signatures", _too_many_signatures, Reason.BUNDLE_INVALID),
    ("key-outside-keys-dir", _set(("keys",), {"trust/evil.asc": "K"}), Reason.BUNDLE_INVALID),
    ("key-path-traversal", _set(("keys",), {"keys/../agent.asc": "K"}), Reason.BUNDLE_INVALID),
    ("key-not-asc", _set(("keys",), {"keys/ops.gpg": "K"}), Reason.BUNDLE_INVALID),
    ("key-too-large", _set(("keys",), {"keys/ops.asc": "K" * (64 * 1024 + 1)}), Reason.BUNDLE_INVALID),
    ("too-many-keys", _too_many_keys, Reason.BUNDLE_INVALID),
    ("too-many-versions", _too_many_versions, Reason.BUNDLE_INVALID),
    ("keys-is-a-list", _set(("keys",), ["keys/ops.asc"]), Reason.BUNDLE_INVALID),
]


@pytest.mark.parametrize(
    ("change", "reason"), [(c, r) for _, c, r in HOSTILE], ids=[i for i, _, _ in HOSTILE]
)
def test_a_hostile_trust_file_is_refused_with_its_reason_before_any_key_is_used(
    change: Callable[[dict[str, Any]], None], reason: Reason
) -> None:
    doc = good_doc()
    change(doc)
    with pytest.raises(TrustFileRejected) as caught:
        parse_trust_file(encode(doc))
    assert caught.value.reason is reason
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.file == TRUST_FILE
    assert diagnostic.reason is reason


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[]", b"null", b'"trust"', b"{" * 100_000, b"\xff\xfe\x00"],
    ids=["empty", "garbage", "a-list", "null", "a-string", "deep-nesting", "not-utf8"],
)
def test_bytes_that_are_not_a_trust_file_are_refused_as_invalid_not_a_crash(raw: bytes) -> None:
    with pytest.raises(TrustFileRejected) as caught:
        parse_trust_file(raw)
    assert caught.value.reason is Reason.BUNDLE_INVALID


def test_an_oversized_trust_file_is_refused_by_size_before_it_is_parsed() -> None:
    # not even valid JSON: the size check comes first, so a huge blob costs no parse
    with pytest.raises(TrustFileRejected) as caught:
        parse_trust_file(b" " * (MAX_TRUST_BYTES + 1))
    assert caught.value.reason is Reason.TOO_LARGE
    assert str(MAX_TRUST_BYTES) in caught.value.diagnostics[0].message


def test_a_trust_file_exactly_at_the_size_cap_is_read() -> None:
    doc = good_doc()
    raw = encode(doc)
    padded = raw + b" " * (MAX_TRUST_BYTES - len(raw))  # JSON allows trailing whitespace
    assert len(padded) == MAX_TRUST_BYTES
    assert parse_trust_file(padded).newest == 2


def test_a_gap_in_the_chain_is_carried_for_the_root_chain_to_judge() -> None:
    # the parser enforces order, not contiguity: a missing version is the chain walk's refusal
    doc = good_doc()
    doc["versions"][1]["version"] = 5
    doc["versions"][1]["signatures"] = {f"trust/root/5.yaml.d/{FPR_A}.asc": ARMOR}
    assert [v.version for v in parse_trust_file(encode(doc)).versions] == [1, 5]


def test_a_version_with_no_signatures_is_carried_for_the_root_chain_to_refuse() -> None:
    doc = good_doc()
    doc["versions"][1]["signatures"] = {}
    chain = parse_trust_file(encode(doc))
    assert dict(chain.versions[1].signatures) == {}


# --- the controller's side: refuse to send what robots would refuse ---------------------------------


def test_the_controller_stalls_rather_than_send_more_versions_than_robots_take() -> None:
    versions = [version(n) for n in range(1, MAX_CHAIN_VERSIONS + 2)]
    with pytest.raises(InvalidContent) as caught:
        build_trust_file(versions, {})
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.file == TRUST_FILE
    assert diagnostic.reason is Reason.TOO_LARGE
    assert diagnostic.message.startswith("versions")


def test_the_controller_stalls_on_a_key_file_robots_would_refuse_and_names_it() -> None:
    with pytest.raises(InvalidContent) as caught:
        build_trust_file([version(1)], {"keys/ops.asc": b"K" * (64 * 1024 + 1)})
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.reason is Reason.TOO_LARGE
    assert "keys/ops.asc" in diagnostic.message


def test_the_controller_stalls_when_the_whole_file_would_exceed_what_robots_read() -> None:
    # each key is under its own cap; together they pass the file's cap
    keys = {f"keys/k{n}.asc": b"K" * (60 * 1024) for n in range(MAX_TRUST_BYTES // (60 * 1024) + 1)}
    with pytest.raises(InvalidContent) as caught:
        build_trust_file([version(1)], keys)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.reason is Reason.TOO_LARGE
    assert str(MAX_TRUST_BYTES) in diagnostic.message


def test_the_trust_file_names_its_format() -> None:
    assert json.loads(build_trust_file([version(1)], {}))["format"] == TRUST_FORMAT


def test_a_base64_document_with_whitespace_inside_is_refused() -> None:
    # strict base64: two encodings of one document would hash differently downstream
    doc = good_doc()
    b64 = doc["versions"][0]["document_b64"]
    doc["versions"][0]["document_b64"] = b64[:4] + "\n" + b64[4:]
    with pytest.raises(TrustFileRejected) as caught:
        parse_trust_file(encode(doc))
    assert caught.value.reason is Reason.BUNDLE_INVALID
    assert "version 1" in caught.value.diagnostics[0].message
    assert base64.b64decode(b64) == b"version: 1\n"
