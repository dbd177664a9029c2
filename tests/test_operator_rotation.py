"""Rotating trust, the operator's library side: ``next_document``'s edits as a table, then
``propose``/``sign_version``/``chain_status`` in process on a fleet with real gpg keys.

The CLI's happy paths are in tests/test_keys_rotation_cli.py; here are the edits an operator can
get wrong (removing a key that is not listed, a typo in a stage, a short key id), the refusals of
``keys sign`` (no key here, a key not in the keyring) and what ``keys chain`` says about a broken
or half-signed version.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleetcd.errors import InvalidContent, SetupError
from fleetcd.operator.devkeys import generate_dev_keys
from fleetcd.operator.rotation import Changes, KeyArg, chain_status, next_document, propose, sign_version
from tests.test_init_keys_sign_approve import (  # noqa: F401  (fixtures)
    TRUST_ROOT,
    fingerprints_by_name,
    keyed_original,
)
from tests.test_init_keys_sign_approve import keyed_fleet as keyed_fleet
from tests.test_keys_rotation_cli import new_key

A, B, C, D = ("A" * 40, "B" * 40, "C" * 40, "D" * 40)
V2 = "trust/root/2.yaml"


def current() -> dict[str, Any]:
    return {
        "version": 3,
        "expires": "2030-01-01T00:00:00Z",
        "controller": [{"name": "ctl", "fingerprint": A}],
        "release_signers": {"threshold": 1, "keys": [{"name": "rel", "fingerprint": B}]},
        "approvers": [{"name": "ann", "fingerprint": C}],
        "approvals": {"production": 1},
        "root": {"threshold": 1, "keys": [{"name": "root", "fingerprint": D}]},
    }


def fprs(keys: list[dict[str, str]]) -> list[str]:
    return [k["fingerprint"] for k in keys]


# --- KeyArg: NAME=FINGERPRINT as typed ------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [f"carol={'a' * 40}", f" carol = 0x{'a' * 40}", f"carol={' '.join(['aaaa'] * 10)}"],
    ids=["lower-case", "spaces-and-0x", "grouped-by-four"],
)
def test_a_fingerprint_is_accepted_as_gpg_prints_it_and_stored_in_one_form(typed: str) -> None:
    assert KeyArg.parse(typed) == KeyArg("carol", "A" * 40)


@pytest.mark.parametrize(
    "typed",
    ["carol", f"={A}", f"  ={A}", "carol=DEADBEEF", f"carol={A}0", f"carol={'G' * 40}"],
    ids=["no-equals", "no-name", "blank-name", "short-key-id", "41-digits", "not-hex"],
)
def test_a_key_argument_that_is_not_name_and_full_fingerprint_is_refused(typed: str) -> None:
    with pytest.raises(SetupError):
        KeyArg.parse(typed)


# --- next_document: version N+1 from N ------------------------------------------------------------


def test_an_empty_change_only_bumps_the_version_and_leaves_n_untouched() -> None:
    before = current()
    snapshot = copy.deepcopy(before)
    after = next_document(before, Changes())
    assert before == snapshot  # pure: version N's data is never edited
    assert after == {**snapshot, "version": 4}


def test_expiry_is_written_in_utc_with_a_z() -> None:
    expires = datetime(2031, 6, 1, 12, 0, tzinfo=timezone.utc)
    assert next_document(current(), Changes(expires=expires))["expires"] == "2031-06-01T12:00:00Z"


def test_a_new_controller_list_replaces_the_old_one() -> None:
    new = [KeyArg("ctl-2", B), KeyArg("ctl-3", C)]
    after = next_document(current(), Changes(controller=new))
    assert after["controller"] == [{"name": "ctl-2", "fingerprint": B}, {"name": "ctl-3", "fingerprint": C}]


def test_revoking_a_signer_and_adding_another_in_one_version() -> None:
    after = next_document(current(), Changes(add_signers=[KeyArg("new", C)], remove_signers=[B.lower()]))
    assert fprs(after["release_signers"]["keys"]) == [C]
    assert after["release_signers"]["threshold"] == 1


def test_adding_a_key_that_is_already_listed_does_not_list_it_twice() -> None:
    after = next_document(
        current(), Changes(add_signers=[KeyArg("again", B)], add_approvers=[KeyArg("x", C)])
    )
    assert fprs(after["release_signers"]["keys"]) == [B]
    assert after["release_signers"]["keys"][0]["name"] == "rel"  # the listed entry is kept as it was
    assert fprs(after["approvers"]) == [C]


def test_removing_and_re_adding_a_key_renames_it() -> None:
    after = next_document(
        current(), Changes(add_root_keys=[KeyArg("root-new-name", D)], remove_root_keys=[D])
    )
    assert after["root"]["keys"] == [{"name": "root-new-name", "fingerprint": D}]


@pytest.mark.parametrize(
    "changes",
    [
        Changes(remove_signers=[C]),
        Changes(remove_approvers=[B]),
        Changes(remove_root_keys=[A]),
    ],
    ids=["signer", "approver", "root-key"],
)
def test_removing_a_key_that_is_not_listed_is_refused_naming_it(changes: Changes) -> None:
    # a typo'd fingerprint must not silently leave the leaked key in place
    with pytest.raises(SetupError) as caught:
        next_document(current(), changes)
    missing = next(iter([*changes.remove_signers, *changes.remove_approvers, *changes.remove_root_keys]))
    assert missing in str(caught.value)


def test_approvals_are_merged_per_stage() -> None:
    after = next_document(current(), Changes(approvals={"staging": 2}))
    assert after["approvals"] == {"production": 1, "staging": 2}
    after = next_document(current(), Changes(approvals={"production": 2}))
    assert after["approvals"] == {"production": 2}


def test_an_approval_count_for_an_unknown_stage_is_refused_naming_it() -> None:
    with pytest.raises(SetupError) as caught:
        next_document(current(), Changes(approvals={"prod": 2, "staging": 1}))
    named = str(caught.value).split("(")[0]  # before the hint that lists the stages there are
    assert "prod" in named and "staging" not in named


def test_thresholds_change_only_when_asked() -> None:
    after = next_document(current(), Changes(signer_threshold=2, root_threshold=3))
    assert after["release_signers"]["threshold"] == 2
    assert after["root"]["threshold"] == 3
    untouched = next_document(current(), Changes(signer_threshold=None))
    assert untouched["release_signers"]["threshold"] == 1 and untouched["root"]["threshold"] == 1


def test_a_version_without_approvers_gains_them() -> None:
    base = current()
    del base["approvers"]
    assert fprs(next_document(base, Changes(add_approvers=[KeyArg("ann", C)]))["approvers"]) == [C]


# --- propose / sign_version / chain_status on a real fleet ---------------------------------------


def test_propose_writes_the_next_version_unsigned_and_chain_says_it_is_not_verified(
    keyed_fleet: Path,
) -> None:
    path = propose(keyed_fleet, Changes(approvals={"staging": 1}))
    assert path == keyed_fleet / V2
    written = yaml.safe_load(path.read_text())
    assert written["version"] == 2 and written["approvals"]["staging"] == 1
    assert path.read_text().startswith("# yaml-language-server")
    status = chain_status(keyed_fleet)
    assert [(s.version, s.verified) for s in status] == [(1, True), (2, False)]
    assert status[1].problem  # says why, not only "no"
    assert status[0].problem == ""


def test_a_refused_proposal_writes_nothing(keyed_fleet: Path) -> None:
    with pytest.raises(InvalidContent) as caught:
        propose(keyed_fleet, Changes(signer_threshold=5))
    assert caught.value.diagnostics[0].file == V2
    assert not (keyed_fleet / V2).exists()
    assert list((keyed_fleet / "trust" / "root").glob(".*.tmp")) == []


def test_a_second_proposal_goes_on_top_of_the_first(keyed_fleet: Path) -> None:
    propose(keyed_fleet, Changes(approvals={"staging": 1}))
    third = propose(keyed_fleet, Changes(signer_threshold=1))
    assert third.name == "3.yaml"
    assert yaml.safe_load(third.read_text())["approvals"]["staging"] == 1  # built from version 2


def test_signing_with_every_root_key_here_makes_the_proposal_verify(keyed_fleet: Path) -> None:
    names = fingerprints_by_name((keyed_fleet / TRUST_ROOT).read_text())
    propose(keyed_fleet, Changes(approvals={"staging": 1}))
    written = sign_version(keyed_fleet, keyed_fleet / ".fleetcd" / "gnupg")
    assert written == [keyed_fleet / f"{V2}.d" / f"{names['root']}.asc"]
    assert [(s.version, s.verified) for s in chain_status(keyed_fleet)] == [(1, True), (2, True)]


def test_keys_sign_with_a_root_key_missing_from_the_keyring_is_refused(
    keyed_fleet: Path, tmp_path: Path
) -> None:
    names = fingerprints_by_name((keyed_fleet / TRUST_ROOT).read_text())
    propose(keyed_fleet, Changes(approvals={"staging": 1}))
    empty = tmp_path / "g"
    empty.mkdir(mode=0o700)
    with pytest.raises(SetupError) as caught:
        sign_version(keyed_fleet, empty, fingerprint=names["root"])
    assert names["root"] in str(caught.value) and "no secret key" in str(caught.value)
    assert not (keyed_fleet / f"{V2}.d").exists()


def test_keys_sign_with_no_root_key_in_the_keyring_says_how_many_keys_it_saw(
    keyed_fleet: Path, tmp_path: Path
) -> None:
    propose(keyed_fleet, Changes(approvals={"staging": 1}))
    empty = tmp_path / "g"
    empty.mkdir(mode=0o700)
    with pytest.raises(SetupError) as caught:
        sign_version(keyed_fleet, empty)
    assert "version 2 or 1" in str(caught.value) and "0 secret key(s)" in str(caught.value)
    assert not (keyed_fleet / f"{V2}.d").exists()


def test_a_new_root_key_alone_cannot_make_its_own_version_verify(keyed_fleet: Path) -> None:
    names = fingerprints_by_name((keyed_fleet / TRUST_ROOT).read_text())
    newcomer = new_key(keyed_fleet, "root-2")
    propose(
        keyed_fleet, Changes(add_root_keys=[KeyArg("root-2", newcomer)], remove_root_keys=[names["root"]])
    )
    written = sign_version(keyed_fleet, keyed_fleet / ".fleetcd" / "gnupg", fingerprint=newcomer)
    assert [p.name for p in written] == [f"{newcomer}.asc"]
    status = chain_status(keyed_fleet)
    assert status[1].verified is False and status[1].problem


def test_chain_status_names_a_version_that_does_not_load_and_stops_trusting_after_it(
    keyed_fleet: Path,
) -> None:
    propose(keyed_fleet, Changes(approvals={"staging": 1}))
    sign_version(keyed_fleet, keyed_fleet / ".fleetcd" / "gnupg")
    (keyed_fleet / "trust" / "root" / "3.yaml").write_text("version: 3\nroot: [not, a, mapping]\n")
    status = chain_status(keyed_fleet)
    assert [(s.version, s.verified) for s in status] == [(1, True), (2, True), (3, False)]
    assert status[2].expires == "?" and status[2].root == "?"
    assert "trust/root/3.yaml" in status[2].problem


def test_an_edit_after_signing_breaks_the_version_it_edited(keyed_fleet: Path) -> None:
    propose(keyed_fleet, Changes(approvals={"staging": 1}))
    sign_version(keyed_fleet, keyed_fleet / ".fleetcd" / "gnupg")
    path = keyed_fleet / V2
    path.write_text(path.read_text().replace("staging: 1", "staging: 0"))
    status = chain_status(keyed_fleet)
    assert [(s.version, s.verified) for s in status] == [(1, True), (2, False)]


def test_keys_generate_refuses_once_the_trust_root_is_past_version_1(keyed_fleet: Path) -> None:
    # new development keys would silently replace keys a rotation already moved on from
    propose(keyed_fleet, Changes(approvals={"staging": 1}))
    before = {p: p.read_bytes() for p in sorted((keyed_fleet / "trust").rglob("*")) if p.is_file()}
    keys_before = sorted(p.name for p in (keyed_fleet / "keys").iterdir())
    with pytest.raises(SetupError) as caught:
        generate_dev_keys(keyed_fleet, keyed_fleet / ".fleetcd" / "gnupg")
    assert "keys propose" in str(caught.value)
    assert {p: p.read_bytes() for p in sorted((keyed_fleet / "trust").rglob("*")) if p.is_file()} == before
    assert sorted(p.name for p in (keyed_fleet / "keys").iterdir()) == keys_before
