"""The local fleet repository as the operator commands see it (fleetcd.operator.repo, .fleetfile, .devkeys).

In-process and on real files: finding the root from anywhere inside it (never from outside), paths
that must not escape the repository, key choice for ``sign``/``approve`` (a fingerprint typed any
way a person would, a key that is not allowed or not in the keyring refused by name), atomic
writes that leave no temp file, matching trust entries by ``name:``, and ``keys list`` over real
public keys made by gpg: which trusted keys have a file, which files trust nothing, which are broken.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

import pytest

from fleetcd.errors import InvalidContent, SetupError
from fleetcd.models.fleet import KeyRef
from fleetcd.operator.devkeys import key_file, list_keys
from fleetcd.operator.fleetfile import (
    DEV_ROLES,
    role_fingerprint_paths,
    trusted_keys,
    value_at,
)
from fleetcd.operator.repo import (
    DEV_GNUPGHOME,
    KeyChoice,
    default_gnupghome,
    ensure_exists,
    find_root,
    load_fleet,
    load_trust_root,
    normalize_fingerprint,
    read_file,
    relative,
    write_atomic,
)
from fleetcd.reasons import Reason
from tests.clirun import fleetcd
from tests.disks import fill, mounted
from tests.gpgkeys import GpgKey, KeyFactory

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "fleet-repo-template"
A, B, C = "A" * 40, "B" * 40, "C" * 40


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    repo = tmp_path / "fleet"
    shutil.copytree(TEMPLATE, repo)
    return repo


# --- find_root / relative / read_file -----------------------------------------------------------------


def test_the_root_is_found_from_the_root_a_subdirectory_and_a_file(fleet: Path) -> None:
    assert find_root(fleet) == fleet.resolve()
    assert find_root(fleet / "releases") == fleet.resolve()
    some_file = next((fleet / "rollouts").glob("*.yaml"))
    assert find_root(some_file) == fleet.resolve()


def test_the_nearest_fleet_yaml_wins_for_a_nested_fleet(fleet: Path) -> None:
    inner = fleet / "configs" / "nested"
    inner.mkdir(parents=True)
    (inner / "fleet.yaml").write_text("kind: Fleet\n")
    assert find_root(inner) == inner.resolve()


def test_a_directory_named_fleet_yaml_is_not_a_root(tmp_path: Path) -> None:
    (tmp_path / "repo" / "fleet.yaml").mkdir(parents=True)
    with pytest.raises(SetupError, match="not inside a fleet repository"):
        find_root(tmp_path / "repo")


def test_outside_any_fleet_the_error_names_the_start_and_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(SetupError) as caught:
        find_root(tmp_path)
    assert str(tmp_path) in str(caught.value) and "--repo" in str(caught.value)


def test_relative_paths_are_posix_and_repository_relative(
    fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert relative(fleet, fleet / "releases" / "nav" / "1.0.0.yaml") == "releases/nav/1.0.0.yaml"
    monkeypatch.chdir(fleet / "releases")
    assert relative(fleet, Path("nav/1.0.0.yaml")) == "releases/nav/1.0.0.yaml"
    assert relative(fleet, Path("../rollouts/r.yaml")) == "rollouts/r.yaml"


@pytest.mark.parametrize("escape", ["../outside.yaml", "/etc/passwd", "releases/../../x.yaml"], ids=repr)
def test_a_path_escaping_the_repository_is_refused(fleet: Path, escape: str) -> None:
    target = Path(escape) if escape.startswith("/") else fleet / escape
    with pytest.raises(SetupError, match="is not inside the fleet repository"):
        relative(fleet, target)


def test_a_symlink_pointing_out_of_the_repository_is_refused(fleet: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text("x: 1\n")
    (fleet / "releases" / "link.yaml").symlink_to(outside)
    with pytest.raises(SetupError, match="not inside"):
        relative(fleet, fleet / "releases" / "link.yaml")


def test_read_file_names_a_missing_file_and_refuses_a_directory(fleet: Path) -> None:
    assert read_file(fleet, "fleet.yaml").startswith(b"# yaml-language-server")
    with pytest.raises(SetupError, match="no such file") as caught:
        read_file(fleet, "releases/nav/9.9.9.yaml")
    assert "9.9.9.yaml" in str(caught.value)
    with pytest.raises(SetupError, match="no such file"):
        read_file(fleet, "releases")


# --- default_gnupghome --------------------------------------------------------------------------------


def test_development_keys_win_over_gnupghome(fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GNUPGHOME", "/somewhere/else")
    assert default_gnupghome(fleet) == Path("/somewhere/else")
    (fleet / DEV_GNUPGHOME).mkdir(parents=True)
    assert default_gnupghome(fleet) == fleet / DEV_GNUPGHOME


def test_without_dev_keys_or_gnupghome_the_users_gnupg_is_used(
    fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GNUPGHOME", raising=False)
    monkeypatch.setenv("HOME", "/home/operator")
    assert default_gnupghome(fleet) == Path("/home/operator/.gnupg")


# --- write_atomic -------------------------------------------------------------------------------------


def test_write_atomic_replaces_creates_parents_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "approvals" / "nav" / "sig.asc"
    write_atomic(target, b"first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["sig.asc"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644, "a committed file must be readable by the work tree"


def test_a_write_on_a_full_disk_keeps_the_old_file_and_cleans_up(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted(disk, "-t", "tmpfs", "-o", "size=256k", "tmpfs"):
        target = disk / "fleet.yaml"
        target.write_bytes(b"old")
        fill(disk)
        with pytest.raises(OSError) as caught:
            write_atomic(target, b"n" * 512 * 1024)
        assert caught.value.errno == errno.ENOSPC
        assert target.read_bytes() == b"old"
        assert sorted(p.name for p in disk.iterdir()) == ["fleet.yaml", "other-process-log"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory anyway")
def test_write_atomic_into_a_read_only_directory_fails_without_damage(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "f").write_bytes(b"old")
    folder.chmod(0o500)
    try:
        with pytest.raises(OSError):
            write_atomic(folder / "f", b"new")
        assert (folder / "f").read_bytes() == b"old"
    finally:
        folder.chmod(0o700)


# --- normalize_fingerprint ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "ABCDEF0123456789ABCDEF0123456789ABCDEF01",
        "abcdef0123456789abcdef0123456789abcdef01",
        "0xABCDEF0123456789ABCDEF0123456789ABCDEF01",
        "0XABCDEF0123456789ABCDEF0123456789ABCDEF01",
        "ABCD EF01 2345 6789 ABCD  EF01 2345 6789 ABCD EF01",
        " abcdef0123456789abcdef0123456789abcdef01\n",
    ],
    ids=["upper", "lower", "0x", "0X", "gpg-spaced", "padded"],
)
def test_a_fingerprint_typed_any_usual_way_normalizes(typed: str) -> None:
    assert normalize_fingerprint(typed) == "ABCDEF0123456789ABCDEF0123456789ABCDEF01"


@pytest.mark.parametrize(
    "typed",
    ["ABCDEF01", "ABCDEF0123456789", "G" * 40, "A" * 39, "A" * 41, "", "0x", "ABCDEF01-" * 4 + "ABCD"],
    ids=["short-id", "long-id", "not-hex", "39", "41", "empty", "prefix-only", "dashes"],
)
def test_short_ids_and_non_fingerprints_are_refused(typed: str) -> None:
    with pytest.raises(SetupError, match="40-hex-digit"):
        normalize_fingerprint(typed)


# --- KeyChoice ----------------------------------------------------------------------------------------

SIGNERS = KeyChoice(
    "a release signer",
    "trust.release_signers.keys",
    (KeyRef(fingerprint=A, name="alice"), KeyRef(fingerprint=B, name="bob")),
)


@pytest.mark.parametrize(
    ("available", "requested", "picked"),
    [
        ([A, B], None, A),
        ([B, A], None, B),  # the keyring's order: the first allowed key found there
        ([C, B], None, B),
        ([A, B], B.lower(), B),
        ([A, B], "0x" + B, B),
    ],
    ids=["first-allowed", "keyring-order", "skips-unallowed", "requested", "requested-0x"],
)
def test_key_choice_picks_an_allowed_key_present_in_the_keyring(
    available: list[str], requested: str | None, picked: str
) -> None:
    assert SIGNERS.pick(available, requested) == picked


def test_a_requested_key_that_is_not_allowed_is_refused_listing_the_allowed_ones() -> None:
    with pytest.raises(SetupError) as caught:
        SIGNERS.pick([A, B, C], C)
    message = str(caught.value)
    assert f"key {C} is not a release signer" in message
    assert f"alice {A}" in message and f"bob {B}" in message


def test_a_requested_allowed_key_missing_from_the_keyring_is_refused() -> None:
    with pytest.raises(SetupError, match=f"no secret key {B} in the keyring"):
        SIGNERS.pick([A], B)


def test_no_allowed_key_in_the_keyring_says_how_many_there_are() -> None:
    with pytest.raises(SetupError, match=r"no secret key of a release signer in the keyring \(1 secret key"):
        SIGNERS.pick([C], None)


def test_no_allowed_keys_at_all_says_none() -> None:
    nobody = KeyChoice("an approver", "trust.approvers", ())
    with pytest.raises(SetupError, match=r"trust\.approvers: none"):
        nobody.pick([A], None)


def test_present_lists_allowed_keys_in_the_listed_order() -> None:
    assert SIGNERS.present([C, B, A]) == [A, B]
    assert SIGNERS.present([]) == []


# --- ensure_exists ------------------------------------------------------------------------------------


def test_ensure_exists_returns_bytes_or_blames_the_referring_field(fleet: Path) -> None:
    assert (
        ensure_exists(fleet, "fleet.yaml", "rollouts/r.yaml", 3, "release")
        == (fleet / "fleet.yaml").read_bytes()
    )
    with pytest.raises(InvalidContent) as caught:
        ensure_exists(fleet, "releases/nav/9.9.9.yaml", "rollouts/r.yaml", 7, "release")
    (found,) = caught.value.diagnostics
    assert (found.file, found.line, found.field, found.reason) == (
        "rollouts/r.yaml",
        7,
        "release",
        Reason.UNKNOWN_REFERENCE,
    )
    assert "releases/nav/9.9.9.yaml does not exist" in found.message


# --- the trust root's key entries (trust/root/<N>.yaml) -----------------------------------------------

ROOT_FILE = "trust/root/1.yaml"
PLACEHOLDERS = {
    "release-signer": "0000000000000000000000000000000000000001",
    "approver-1": "0000000000000000000000000000000000000002",
    "approver-2": "0000000000000000000000000000000000000003",
    "controller": "0000000000000000000000000000000000000004",
    "root": "0000000000000000000000000000000000000005",
}


def trust_root_data(fleet: Path) -> dict[str, object]:
    data = load_trust_root(fleet).data
    assert isinstance(data, dict)
    return data


def test_the_templates_roles_are_found_where_keys_generate_writes(fleet: Path) -> None:
    data = trust_root_data(fleet)
    paths = role_fingerprint_paths(data, file=ROOT_FILE)
    assert paths == {
        "root": ("root", "keys", 0, "fingerprint"),
        "release-signer": ("release_signers", "keys", 0, "fingerprint"),
        "approver-1": ("approvers", 0, "fingerprint"),
        "approver-2": ("approvers", 1, "fingerprint"),
        "controller": ("controller", 0, "fingerprint"),
    }
    assert set(paths) == set(DEV_ROLES)
    for role, path in paths.items():
        assert value_at(data, path) == PLACEHOLDERS[role]


def test_a_missing_role_is_named_with_where_to_add_it(fleet: Path) -> None:
    data = trust_root_data(fleet)
    data["approvers"] = [{"name": "approver-1", "fingerprint": A}]
    with pytest.raises(InvalidContent) as caught:
        role_fingerprint_paths(data, file=ROOT_FILE)
    (found,) = caught.value.diagnostics
    assert found.file == ROOT_FILE
    assert "'approver-2'" in found.message and "'approver-1'" not in found.message


def test_the_first_entry_of_a_duplicated_name_is_the_one_rewritten(fleet: Path) -> None:
    data = trust_root_data(fleet)
    approvers = data["approvers"]
    assert isinstance(approvers, list)
    approvers.append({"name": "approver-1", "fingerprint": B})
    assert role_fingerprint_paths(data)["approver-1"] == ("approvers", 0, "fingerprint")


def test_an_entry_that_is_not_a_mapping_is_skipped_not_crashed_on(fleet: Path) -> None:
    data = trust_root_data(fleet)
    approvers = data["approvers"]
    assert isinstance(approvers, list)
    approvers.insert(0, "approver-1")
    assert role_fingerprint_paths(data)["approver-1"] == ("approvers", 1, "fingerprint")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("a",), {"b": [10, {"c": "deep"}]}),
        (("a", "b", 0), 10),
        (("a", "b", 1, "c"), "deep"),
        (("a", "b", 2), None),
        (("a", "b", -1), None),
        (("a", "x"), None),
        (("a", "b", "0"), None),
        (("a", "b", 0, "c"), None),
        ((), {"a": {"b": [10, {"c": "deep"}]}}),
    ],
    ids=[
        "mapping",
        "list-index",
        "nested",
        "index-past-end",
        "negative-index",
        "missing-key",
        "string-index",
        "into-scalar",
        "root",
    ],
)
def test_value_at_reads_mappings_and_lists_and_never_raises(
    path: tuple[str | int, ...], value: object
) -> None:
    assert value_at({"a": {"b": [10, {"c": "deep"}]}}, path) == value


def test_trusted_keys_lists_every_role_in_order(fleet: Path) -> None:
    keys = trusted_keys(load_trust_root(fleet).model, load_fleet(fleet).model)
    assert [(k.role, k.name) for k in keys] == [
        ("root", "root"),
        ("release-signer", "release-signer"),
        ("approver", "approver-1"),
        ("approver", "approver-2"),
        ("controller", "controller"),
    ]


# --- keys list over real public keys ------------------------------------------------------------------


def put_fingerprints(fleet: Path, by_role: dict[str, str]) -> None:
    text = (fleet / ROOT_FILE).read_text()
    for role, fpr in by_role.items():
        text = text.replace(PLACEHOLDERS[role], fpr)
    (fleet / ROOT_FILE).write_text(text)


@pytest.fixture
def people(keys: KeyFactory) -> dict[str, GpgKey]:
    return {role: keys.key(f"ops-{role}") for role in DEV_ROLES}


def test_keys_list_shows_which_trusted_keys_have_a_file(fleet: Path, people: dict[str, GpgKey]) -> None:
    put_fingerprints(fleet, {role: key.fingerprint for role, key in people.items()})
    for role in ("release-signer", "controller"):
        write_atomic(fleet / key_file(role), people[role].public)

    listing = list_keys(fleet)

    files = {status.key.name: status.files for status in listing.keys}
    assert files == {
        "release-signer": ("keys/release-signer.asc",),
        "approver-1": (),
        "approver-2": (),
        "controller": ("keys/controller.asc",),
        "root": (),
    }
    assert listing.problems == () and listing.untrusted_files == ()


def test_a_key_file_of_someone_the_fleet_does_not_trust_is_listed_as_untrusted(
    fleet: Path, people: dict[str, GpgKey], keys: KeyFactory
) -> None:
    put_fingerprints(fleet, {role: key.fingerprint for role, key in people.items()})
    write_atomic(fleet / "keys/mallory.asc", keys.key("mallory").public)
    write_atomic(fleet / key_file("approver-1"), people["approver-1"].public)
    listing = list_keys(fleet)
    assert listing.untrusted_files == ("keys/mallory.asc",)


def test_one_key_in_two_files_lists_both(fleet: Path, people: dict[str, GpgKey]) -> None:
    put_fingerprints(fleet, {role: key.fingerprint for role, key in people.items()})
    write_atomic(fleet / "keys/approver-1.asc", people["approver-1"].public)
    write_atomic(fleet / "keys/copy-of-approver.asc", people["approver-1"].public)
    listing = list_keys(fleet)
    (approver,) = [s for s in listing.keys if s.key.name == "approver-1"]
    assert approver.files == ("keys/approver-1.asc", "keys/copy-of-approver.asc")


def test_a_broken_key_file_is_a_problem_and_the_others_still_list(
    fleet: Path, people: dict[str, GpgKey]
) -> None:
    put_fingerprints(fleet, {role: key.fingerprint for role, key in people.items()})
    write_atomic(fleet / "keys/broken.asc", b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\ngarbage\n")
    write_atomic(fleet / key_file("controller"), people["controller"].public)
    listing = list_keys(fleet)
    assert len(listing.problems) == 1 and "keys/broken.asc" in listing.problems[0]
    assert {s.key.name: s.files for s in listing.keys}["controller"] == ("keys/controller.asc",)


def test_keys_list_without_a_keys_directory_lists_every_key_as_missing(fleet: Path) -> None:
    shutil.rmtree(fleet / "keys")
    listing = list_keys(fleet)
    assert all(status.files == () for status in listing.keys)
    assert len(listing.keys) == len(DEV_ROLES)


def test_keys_list_exits_1_while_a_trusted_key_has_no_key_file_and_0_once_all_do(
    fleet: Path, people: dict[str, GpgKey], capsys: pytest.CaptureFixture[str]
) -> None:
    """A CI step running `fleetcd keys list` must not pass while, say, the controller's public key
    is missing: nothing that key signs could be verified."""
    put_fingerprints(fleet, {role: key.fingerprint for role, key in people.items()})
    for role in DEV_ROLES:
        if role != "controller":
            write_atomic(fleet / key_file(role), people[role].public)
    code, out, _ = fleetcd(capsys, "keys", "list", "--repo", str(fleet))
    assert code == 1
    (line,) = [x for x in out.splitlines() if people["controller"].fingerprint in x]
    assert line.endswith("[MISSING from keys/]")

    write_atomic(fleet / key_file("controller"), people["controller"].public)
    code, out, err = fleetcd(capsys, "keys", "list", "--repo", str(fleet))
    assert code == 0, err
    assert "MISSING" not in out and len(out.splitlines()) == len(DEV_ROLES)


def test_keys_list_exits_1_naming_a_key_file_that_does_not_load(
    fleet: Path, people: dict[str, GpgKey], keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    put_fingerprints(fleet, {role: key.fingerprint for role, key in people.items()})
    for role in DEV_ROLES:
        write_atomic(fleet / key_file(role), people[role].public)
    write_atomic(fleet / "keys/mallory.asc", keys.key("mallory").public)
    code, _, err = fleetcd(capsys, "keys", "list", "--repo", str(fleet))
    assert code == 0, "an untrusted key file is a note, not an error"
    assert "note: keys/mallory.asc holds no key the fleet trusts" in err

    write_atomic(fleet / "keys/broken.asc", b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\ngarbage\n")
    code, out, err = fleetcd(capsys, "keys", "list", "--repo", str(fleet))
    assert code == 1
    assert any(x.startswith("error: keys/broken.asc") for x in err.splitlines())
    assert len(out.splitlines()) == len(DEV_ROLES), "the good keys are still listed"
