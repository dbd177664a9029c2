"""``fleetcd sign`` and ``fleetcd approve`` in process: what is refused before a signature is written,
and what an approval covers. Which key a role picks is tested in tests/test_operator_repo.py.

On the template fleet with ``keys generate``'s development keys (real gpg). The CLI's happy path is in
tests/test_init_keys_sign_approve.py; here are the operator's mistakes (a file in the wrong place,
a key that is not of the role or not in the keyring) and what voids an approval (an edit of the
rollout, the release or the app's config files; not a file beside them that is no config).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fleetcd.errors import InvalidContent, SetupError
from fleetcd.operator.signing import approval_subject, approve_rollout, approve_rollout_all, sign_release
from fleetcd.reasons import Reason
from tests.test_init_keys_sign_approve import (  # noqa: F401  (fixtures)
    RELEASE,
    ROLLOUT,
    TRUST_ROOT,
    fingerprints_by_name,
    keyed_original,
)
from tests.test_init_keys_sign_approve import keyed_fleet as keyed_fleet


def gnupg(fleet: Path) -> Path:
    return fleet / ".fleetcd" / "gnupg"


# --- sign: refused before anything is written -------------------------------------------------------


def test_signing_a_release_writes_one_signature_named_by_the_key(keyed_fleet: Path) -> None:
    names = fingerprints_by_name((keyed_fleet / TRUST_ROOT).read_text())
    written = sign_release(keyed_fleet, keyed_fleet / RELEASE, gnupg(keyed_fleet))
    assert written == keyed_fleet / f"{RELEASE}.d" / f"{names['release-signer']}.asc"
    assert written.read_bytes().startswith(b"-----BEGIN PGP SIGNATURE-----")


def test_a_release_copied_to_another_version_is_refused_naming_the_field(keyed_fleet: Path) -> None:
    copy = keyed_fleet / "releases" / "navstack" / "9.9.9.yaml"
    shutil.copy(keyed_fleet / RELEASE, copy)
    with pytest.raises(InvalidContent) as caught:
        sign_release(keyed_fleet, copy, gnupg(keyed_fleet))
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.file, diagnostic.field, diagnostic.reason) == (
        "releases/navstack/9.9.9.yaml",
        "version",
        Reason.NAME_MISMATCH,
    )
    assert diagnostic.line is not None
    assert not (keyed_fleet / "releases" / "navstack" / "9.9.9.yaml.d").exists()


def test_signing_a_file_that_is_not_a_release_is_refused(keyed_fleet: Path) -> None:
    with pytest.raises(InvalidContent) as caught:
        sign_release(keyed_fleet, keyed_fleet / ROLLOUT, gnupg(keyed_fleet))
    assert caught.value.diagnostics[0].file == ROLLOUT
    assert not (keyed_fleet / f"{ROLLOUT}.d").exists()


def test_signing_a_file_outside_the_fleet_is_refused(keyed_fleet: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.yaml"
    outside.write_bytes((keyed_fleet / RELEASE).read_bytes())
    with pytest.raises(SetupError):
        sign_release(keyed_fleet, outside, gnupg(keyed_fleet))


def test_signing_with_an_approver_key_is_refused(keyed_fleet: Path) -> None:
    names = fingerprints_by_name((keyed_fleet / TRUST_ROOT).read_text())
    with pytest.raises(SetupError) as caught:
        sign_release(keyed_fleet, keyed_fleet / RELEASE, gnupg(keyed_fleet), names["approver-1"])
    assert "release signer" in str(caught.value)
    assert not (keyed_fleet / f"{RELEASE}.d").exists()


# --- approve: what an approval covers ---------------------------------------------------------------


def test_approving_with_every_approver_key_writes_one_file_per_key(keyed_fleet: Path) -> None:
    names = fingerprints_by_name((keyed_fleet / TRUST_ROOT).read_text())
    written = approve_rollout_all(keyed_fleet, keyed_fleet / ROLLOUT, gnupg(keyed_fleet))
    approvers = sorted(fpr for name, fpr in names.items() if name.startswith("approver"))
    assert sorted(p.stem for p in written) == approvers
    assert {p.parent for p in written} == {keyed_fleet / "approvals" / "navstack"}


def test_approving_with_an_empty_keyring_is_refused(keyed_fleet: Path, tmp_path: Path) -> None:
    empty = tmp_path / "g"
    empty.mkdir(mode=0o700)
    with pytest.raises(SetupError):
        approve_rollout_all(keyed_fleet, keyed_fleet / ROLLOUT, empty)
    with pytest.raises(SetupError):
        approve_rollout(keyed_fleet, keyed_fleet / ROLLOUT, empty)


def payload(fleet: Path) -> bytes:
    return approval_subject(fleet, fleet / ROLLOUT).payload


@pytest.mark.parametrize(
    ("path", "edit"),
    [
        (ROLLOUT, lambda t: t.replace("soak_seconds: 600", "soak_seconds: 60")),
        (RELEASE, lambda t: t + "\n# a comment is a byte too\n"),
        ("configs/navstack/default.yaml", lambda t: t + "\n# reviewed\n"),
    ],
    ids=["rollout-gate", "release-bytes", "config-file"],
)
def test_an_edit_of_what_was_approved_changes_what_an_approval_signs(
    keyed_fleet: Path, path: str, edit: object
) -> None:
    before = payload(keyed_fleet)
    target = keyed_fleet / path
    target.write_text(edit(target.read_text()))  # type: ignore[operator]
    assert payload(keyed_fleet) != before


def test_a_new_config_layer_changes_what_an_approval_signs(keyed_fleet: Path) -> None:
    before = payload(keyed_fleet)
    source = keyed_fleet / "configs" / "navstack" / "default.yaml"
    (keyed_fleet / "configs" / "navstack" / "cohort-staging.yaml").write_text(
        source.read_text().replace("scope: default", "scope: cohort\ntarget: staging")
    )
    assert payload(keyed_fleet) != before


def test_files_beside_the_configs_that_are_no_config_do_not_void_approvals(keyed_fleet: Path) -> None:
    before = payload(keyed_fleet)
    (keyed_fleet / "configs" / "navstack" / "NOTES.md").write_text("why the canary is slower\n")
    (keyed_fleet / "README.md").write_text("changed\n")
    assert payload(keyed_fleet) == before


def test_a_rollout_naming_a_release_that_is_not_there_is_refused_naming_the_field(keyed_fleet: Path) -> None:
    rollout = keyed_fleet / ROLLOUT
    rollout.write_text(rollout.read_text().replace('release: "1.0.0"', 'release: "7.7.7"'))
    with pytest.raises(InvalidContent) as caught:
        approve_rollout_all(keyed_fleet, rollout, gnupg(keyed_fleet))
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.file, diagnostic.field) == (ROLLOUT, "release")
    assert list((keyed_fleet / "approvals").rglob("*.asc")) == []


def test_a_rollout_whose_name_is_not_its_file_name_is_refused(keyed_fleet: Path) -> None:
    moved = keyed_fleet / "rollouts" / "navstack-copy.yaml"
    shutil.copy(keyed_fleet / ROLLOUT, moved)
    with pytest.raises(InvalidContent) as caught:
        approve_rollout_all(keyed_fleet, moved, gnupg(keyed_fleet))
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.field, diagnostic.reason) == ("name", Reason.NAME_MISMATCH)
