"""Release-signature thresholds and rollout approvals, decided over real gpg signatures."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from fleetcd.desired.configset import config_root
from fleetcd.models.fleet import KeyRef, SignerSet
from fleetcd.reasons import Reason
from fleetcd.trust.approval import (
    APPROVAL_DOMAIN,
    approval_payload,
    canonical_rollout,
    legacy_approval_payload,
)
from fleetcd.trust.gpg import Keyring
from fleetcd.trust.policy import check_approvals, check_release
from tests.gpgkeys import GpgKey, KeyFactory, shared_keys

RELEASE_PATH = "releases/nav/1.2.0.yaml"
RELEASE = b"apiVersion: fleetcd.dev/v1\nkind: Release\napp: nav\nversion: 1.2.0\n"
ROLLOUT_PATH = "rollouts/nav-canary.yaml"
ROLLOUT: dict[str, Any] = {
    "apiVersion": "fleetcd.dev/v1",
    "kind": "Rollout",
    "name": "nav-canary",
    "app": "nav",
    "release": "1.2.0",
    "targets": {"cohorts": ["canary"], "devices": []},
    "strategy": {"type": "canary", "percent": 10.0, "soak_seconds": 1800},
    "schedule": {"not_before": "2026-05-01T06:00:00Z"},
    "paused": False,
}


@pytest.fixture(scope="session")
def keys(gpg_available: str) -> dict[str, GpgKey]:
    factory = shared_keys()
    return {
        "alice": factory.key("alice"),
        "bob": factory.key("bob"),
        "carol": factory.key("carol"),
        "olga": factory.expired_key("olga"),
        "rita": factory.revoked_key("rita"),
    }


@pytest.fixture(scope="session")
def factory(gpg_available: str) -> KeyFactory:
    return shared_keys()


@pytest.fixture(scope="module")
def keyring(keys: dict[str, GpgKey]) -> Iterator[Keyring]:
    with Keyring.from_armored({key.key_file: key.public for key in keys.values()}) as ring:
        yield ring


def refs(keys: dict[str, GpgKey], *names: str) -> list[KeyRef]:
    return [KeyRef(fingerprint=keys[name].fingerprint, name=name) for name in names]


@dataclass(frozen=True)
class Sig:
    named: str  # whose fingerprint the file is named after
    by: str  # who actually signs
    tampered: bool = False  # signs other bytes than the release file
    folder: str = RELEASE_PATH + ".d"
    lower_case_name: bool = False


@dataclass(frozen=True)
class Case:
    threshold: int
    signers: tuple[str, ...]
    files: tuple[Sig, ...]
    met: bool
    verified: tuple[str, ...]
    file_reasons: tuple[Reason, ...] = ()


RELEASE_CASES = {
    "one-valid-signature-meets-threshold-1": Case(1, ("alice",), (Sig("alice", "alice"),), True, ("alice",)),
    "two-distinct-signers-meet-threshold-2": Case(
        2, ("alice", "bob"), (Sig("alice", "alice"), Sig("bob", "bob")), True, ("alice", "bob")
    ),
    "same-key-in-two-files-counts-once": Case(
        2,
        ("alice", "bob"),
        (Sig("alice", "alice"), Sig("alice", "alice", folder="releases/nav/copy")),
        False,
        ("alice",),
        (Reason.DUPLICATE_ID,),
    ),
    "file-named-after-another-signer": Case(
        2,
        ("alice", "bob"),
        (Sig("alice", "alice"), Sig("bob", "alice")),
        False,
        ("alice",),
        (Reason.NAME_MISMATCH,),
    ),
    "lower-case-file-name": Case(
        1, ("alice",), (Sig("alice", "alice", lower_case_name=True),), False, (), (Reason.NAME_MISMATCH,)
    ),
    "valid-signature-by-key-not-a-signer": Case(
        1, ("alice",), (Sig("carol", "carol"),), False, (), (Reason.SIGNATURE_UNTRUSTED,)
    ),
    "signature-over-different-bytes": Case(
        1, ("alice",), (Sig("alice", "alice", tampered=True),), False, (), (Reason.SIGNATURE_INVALID,)
    ),
    "expired-signer": Case(1, ("olga",), (Sig("olga", "olga"),), False, (), (Reason.KEY_EXPIRED,)),
    "revoked-signer": Case(1, ("rita",), (Sig("rita", "rita"),), False, (), (Reason.KEY_REVOKED,)),
    "bad-extra-signature-does-not-block": Case(
        1,
        ("alice", "bob"),
        (Sig("alice", "alice"), Sig("bob", "bob", tampered=True)),
        True,
        ("alice",),
        (Reason.SIGNATURE_INVALID,),
    ),
    "no-signature-files": Case(1, ("alice",), (), False, ()),
}


@pytest.mark.parametrize("case", RELEASE_CASES.values(), ids=RELEASE_CASES.keys())
def test_release_signature_threshold(
    case: Case, keys: dict[str, GpgKey], factory: KeyFactory, keyring: Keyring
) -> None:
    files = {}
    for sig in case.files:
        name = keys[sig.named].fingerprint
        name = name.lower() if sig.lower_case_name else name
        data = RELEASE + b"# tampered\n" if sig.tampered else RELEASE
        files[f"{sig.folder}/{name}.asc"] = factory.sign(data, keys[sig.by])
    signers = SignerSet(threshold=case.threshold, keys=refs(keys, *case.signers))

    status = check_release(RELEASE_PATH, RELEASE, files, signers, keyring)

    assert status.met is case.met
    assert sorted(status.verified) == sorted(keys[name].fingerprint for name in case.verified)
    assert tuple(d.reason for d in status.diagnostics if d.severity == "warning") == case.file_reasons
    errors = [d for d in status.diagnostics if d.severity == "error"]
    if case.met:
        assert errors == []
    else:
        [error] = errors
        assert error.file == RELEASE_PATH
        assert error.reason is (Reason.BELOW_THRESHOLD if case.files else Reason.SIGNATURE_MISSING)


def test_shortfall_message_names_who_verified_and_what_failed(
    keys: dict[str, GpgKey], factory: KeyFactory, keyring: Keyring
) -> None:
    files = {
        f"{RELEASE_PATH}.d/{keys['alice'].fingerprint}.asc": factory.sign(RELEASE, keys["alice"]),
        f"{RELEASE_PATH}.d/{keys['bob'].fingerprint}.asc": factory.sign(RELEASE + b"x", keys["bob"]),
    }
    signers = SignerSet(threshold=2, keys=refs(keys, "alice", "bob"))

    status = check_release(RELEASE_PATH, RELEASE, files, signers, keyring)

    assert str(status.diagnostics[-1]) == (
        "releases/nav/1.2.0.yaml: 1 of 2 required release signatures verified (alice); "
        "bob: signature over different bytes"
    )
    assert [c.counted for c in status.checks] == [
        path.startswith(f"{RELEASE_PATH}.d/{keys['alice'].fingerprint}") for path in sorted(files)
    ]


def approval_files(
    keys: dict[str, GpgKey], factory: KeyFactory, payload: bytes, *names: str
) -> dict[str, bytes]:
    return {
        f"approvals/nav-canary/{keys[name].fingerprint}.asc": factory.sign(payload, keys[name])
        for name in names
    }


CONFIGS = {"configs/nav/default.yaml": b"values:\n  max_speed_mps: 1.2\n"}


def payload_for(
    rollout: dict[str, Any], release: bytes = RELEASE, configs: dict[str, bytes] = CONFIGS
) -> bytes:
    return approval_payload("nav-canary", rollout, RELEASE_PATH, release, config_root(configs))


def test_approvals_below_threshold_report_count_and_who_approved(
    keys: dict[str, GpgKey], factory: KeyFactory, keyring: Keyring
) -> None:
    payload = payload_for(ROLLOUT)
    approvals = approval_files(keys, factory, payload, "alice")

    status = check_approvals(ROLLOUT_PATH, payload, approvals, refs(keys, "alice", "bob"), 2, keyring)

    assert not status.met
    [diagnostic] = status.diagnostics
    assert diagnostic.reason is Reason.APPROVAL_MISSING
    assert str(diagnostic) == "rollouts/nav-canary.yaml: 1 of 2 required approvals verified (alice)"


def test_editing_the_rollout_voids_its_approvals(
    keys: dict[str, GpgKey], factory: KeyFactory, keyring: Keyring
) -> None:
    approvals = approval_files(keys, factory, payload_for(ROLLOUT), "alice", "bob")
    widened = {**ROLLOUT, "targets": {"cohorts": ["canary", "production"], "devices": []}}

    status = check_approvals(
        ROLLOUT_PATH, payload_for(widened), approvals, refs(keys, "alice", "bob"), 2, keyring
    )

    assert not status.met
    assert [d.reason for d in status.diagnostics] == [Reason.SIGNATURE_INVALID] * 2 + [
        Reason.APPROVAL_MISSING
    ]


def test_pausing_a_rollout_keeps_its_approvals(
    keys: dict[str, GpgKey], factory: KeyFactory, keyring: Keyring
) -> None:
    approvals = approval_files(keys, factory, payload_for(ROLLOUT), "alice", "bob")
    paused = {**ROLLOUT, "paused": True}

    status = check_approvals(
        ROLLOUT_PATH, payload_for(paused), approvals, refs(keys, "alice", "bob"), 2, keyring
    )

    assert status.met
    assert status.diagnostics == ()


def test_release_signature_cannot_be_replayed_as_an_approval(
    keys: dict[str, GpgKey], factory: KeyFactory, keyring: Keyring
) -> None:
    replayed = {f"approvals/nav-canary/{keys['alice'].fingerprint}.asc": factory.sign(RELEASE, keys["alice"])}

    status = check_approvals(ROLLOUT_PATH, payload_for(ROLLOUT), replayed, refs(keys, "alice"), 1, keyring)

    assert not status.met
    assert status.diagnostics[0].reason is Reason.SIGNATURE_INVALID


def test_approval_by_a_key_that_is_not_an_approver_is_not_counted(
    keys: dict[str, GpgKey], factory: KeyFactory, keyring: Keyring
) -> None:
    payload = payload_for(ROLLOUT)
    approvals = approval_files(keys, factory, payload, "alice", "carol")

    status = check_approvals(ROLLOUT_PATH, payload, approvals, refs(keys, "alice", "bob"), 2, keyring)

    assert status.verified == (keys["alice"].fingerprint,)
    assert Reason.SIGNATURE_UNTRUSTED in [d.reason for d in status.diagnostics]


def test_stage_needing_no_approvals_is_met_without_any(keyring: Keyring) -> None:
    status = check_approvals(ROLLOUT_PATH, payload_for(ROLLOUT), {}, [], 0, keyring)
    assert status.met
    assert status.diagnostics == ()


# --- approval payload (pure) -----------------------------------------------------------------------


def test_approval_payload_names_rollout_and_release_by_hash() -> None:
    lines = payload_for(ROLLOUT).split(b"\n")
    assert payload_for(ROLLOUT).startswith(APPROVAL_DOMAIN)
    assert lines[1] == b"rollout: nav-canary"
    assert lines[2].startswith(b"rollout-sha256: ") and len(lines[2]) == len("rollout-sha256: ") + 64
    assert lines[3] == b"release: releases/nav/1.2.0.yaml"
    assert lines[4].startswith(b"release-sha256: ")
    assert lines[5] == b"configs: configs/nav/"
    assert lines[6] == b"configs-count: 1"
    assert lines[7] == b"configs-root: " + config_root(CONFIGS)[0].encode()
    assert lines[8:] == [b""]


EDITS: dict[str, dict[str, Any]] = {
    "release-version": {"release": "1.2.1"},
    "targets": {"targets": {"cohorts": ["production"], "devices": []}},
    "strategy-percent": {"strategy": {"type": "canary", "percent": 50.0, "soak_seconds": 1800}},
    "schedule": {"schedule": {"not_before": "2026-05-02T06:00:00Z"}},
    "app": {"app": "perception"},
    "added-gate": {"gates": ["docked"]},
    "halt-policy-changed": {"on_halt": "pause"},
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_any_non_operational_edit_changes_the_approval_payload(edit: dict[str, Any]) -> None:
    assert payload_for({**ROLLOUT, **edit}) != payload_for(ROLLOUT)


OPERATIONAL = {"paused": {"paused": True}, "aborted": {"aborted": True}, "promote": {"promote": 2}}


@pytest.mark.parametrize("edit", OPERATIONAL.values(), ids=OPERATIONAL.keys())
def test_operational_switches_do_not_change_the_approval_payload(edit: dict[str, Any]) -> None:
    assert payload_for({**ROLLOUT, **edit}) == payload_for(ROLLOUT)


def test_canonical_rollout_ignores_key_order_and_layout() -> None:
    reordered = dict(reversed(list(ROLLOUT.items())))
    assert canonical_rollout(reordered) == canonical_rollout(ROLLOUT)
    text = canonical_rollout({**ROLLOUT, "app": "navigación"}).decode("utf-8")
    assert text.startswith('{"apiVersion":"fleetcd.dev/v1","app":"navigación","kind":"Rollout",')
    assert '"paused"' not in text


def test_changed_release_bytes_change_the_approval_payload() -> None:
    assert payload_for(ROLLOUT, RELEASE + b"\n") != payload_for(ROLLOUT)


CONFIG_EDITS: dict[str, dict[str, bytes]] = {
    "value-edited": {"configs/nav/default.yaml": b"values:\n  max_speed_mps: 0.9\n"},
    "device-file-added": {**CONFIGS, "configs/nav/device-amr-1.yaml": b"values: {}\n"},
    "file-removed": {},
    "file-renamed": {"configs/nav/cohort-canary.yaml": CONFIGS["configs/nav/default.yaml"]},
}


@pytest.mark.parametrize("configs", CONFIG_EDITS.values(), ids=CONFIG_EDITS.keys())
def test_any_config_edit_of_the_app_changes_the_approval_payload(configs: dict[str, bytes]) -> None:
    assert payload_for(ROLLOUT, configs=configs) != payload_for(ROLLOUT)


def test_a_v1_approval_is_not_a_v2_approval() -> None:
    legacy = legacy_approval_payload("nav-canary", ROLLOUT, RELEASE_PATH, RELEASE)
    assert legacy.startswith(b"fleetcd-approval-v1\n")
    assert not payload_for(ROLLOUT).startswith(legacy)


def test_newline_in_a_payload_field_is_refused() -> None:
    with pytest.raises(ValueError, match="single line"):
        approval_payload("nav\nrelease: releases/evil.yaml", ROLLOUT, RELEASE_PATH, RELEASE, config_root({}))
