"""An app's config set as approvals cover it: which files belong, and what a proof binds.

Approvals sign the root of the Merkle tree over an app's ``configs/<app>/*.yaml`` files (path and
sha256 of each). A robot receives only the layers that apply to it, each with a proof. So: a file
must be proven at its own path (the same bytes filed elsewhere are not approved there), in a set of
exactly the approved size, and the set is the same whatever order the files were read in.
"""

from __future__ import annotations

import hashlib

import pytest

from fleetcd.desired.configset import ConfigSet, app_config_files, config_root, included, merged_sha256

DEFAULT = "configs/navstack/default.yaml"
CANARY = "configs/navstack/cohort-canary.yaml"
DEVICE = "configs/navstack/device-amr-1.yaml"
FILES = {DEFAULT: b"speed: 1.5\n", CANARY: b"speed: 1.0\n", DEVICE: b"speed: 0.5\n"}


@pytest.mark.parametrize(
    "path",
    [
        "configs/mapper/default.yaml",  # another app
        "configs/navstack/default.yml",
        "configs/navstack/notes/default.yaml",
        "configs/navstack/README.md",
        "releases/navstack/1.0.0.yaml",
        "configs/navstack.yaml",
    ],
)
def test_only_the_apps_own_config_files_are_in_its_set(path: str) -> None:
    found = app_config_files({**FILES, path: b"x: 1\n"}, "navstack")
    assert found == FILES


def test_the_set_does_not_depend_on_the_order_files_were_read_in() -> None:
    reversed_files = dict(reversed(list(FILES.items())))
    assert config_root(FILES) == config_root(reversed_files)
    assert config_root(FILES)[1] == 3


def test_every_file_proves_at_its_own_path_in_a_set_of_the_approved_size() -> None:
    configs = ConfigSet(FILES)
    for path, data in FILES.items():
        assert included(path, data, configs.proof(path), configs.root, configs.count)


def test_approved_bytes_filed_at_another_path_are_not_approved_there() -> None:
    # the canary's values served as the default layer (or as another robot's device file)
    configs = ConfigSet(FILES)
    proof = configs.proof(CANARY)
    assert not included(DEFAULT, FILES[CANARY], proof, configs.root, configs.count)
    assert not included(
        "configs/navstack/device-amr-2.yaml", FILES[DEVICE], configs.proof(DEVICE), configs.root, 3
    )


def test_a_proof_against_a_set_of_another_size_is_refused() -> None:
    # dropping a layer from the count would hide that the robot was not sent it
    configs = ConfigSet(FILES)
    assert not included(DEFAULT, FILES[DEFAULT], configs.proof(DEFAULT), configs.root, configs.count - 1)
    assert not included(DEFAULT, FILES[DEFAULT], configs.proof(DEFAULT), configs.root, configs.count + 1)


def test_edited_bytes_are_not_in_the_approved_set() -> None:
    configs = ConfigSet(FILES)
    assert not included(DEFAULT, b"speed: 9.9\n", configs.proof(DEFAULT), configs.root, configs.count)


def test_adding_or_editing_any_file_changes_the_root_approvals_sign() -> None:
    root = config_root(FILES)[0]
    assert config_root({**FILES, "configs/navstack/cohort-lab.yaml": b"speed: 2\n"})[0] != root
    assert config_root({**FILES, DEVICE: b"speed: 0.6\n"})[0] != root
    assert config_root({k: v for k, v in FILES.items() if k != DEVICE})[0] != root


def test_an_app_without_config_has_the_empty_root() -> None:
    assert config_root({}) == (hashlib.sha256(b"").hexdigest(), 0)


def test_no_proof_for_a_file_the_set_does_not_hold() -> None:
    with pytest.raises(KeyError):
        ConfigSet(FILES).proof("configs/navstack/device-amr-9.yaml")


def test_merged_values_hash_the_same_whatever_the_key_order_and_none_is_no_config() -> None:
    assert merged_sha256({"a": 1, "b": {"c": 2, "d": 3}}) == merged_sha256({"b": {"d": 3, "c": 2}, "a": 1})
    assert merged_sha256({"a": 1}) != merged_sha256({"a": 2})
    assert merged_sha256(None) is None
    assert merged_sha256({}) is not None  # an empty config is a config


def test_a_value_json_cannot_carry_is_refused_not_hashed() -> None:
    with pytest.raises(ValueError):
        merged_sha256({"speed": float("nan")})
