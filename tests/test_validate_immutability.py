"""Published releases never change: compared with --base (a real git commit), edits and deletions fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetcd.errors import SetupError
from fleetcd.validation.immutability import first_difference
from tests.fleetrepo import FleetRepoBuilder, found
from tests.gpgkeys import KeyFactory

OLD = "releases/nav/0.9.0.yaml"


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    fleet = FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()
    fleet.release("nav", "0.9.0", config_schema={"type": "object"}, notes="first field test")
    fleet.git_init()
    fleet.commit("publish nav 0.9.0 and 1.0.0")
    return fleet


def test_release_edited_after_publication_is_rejected_even_when_re_signed(fleet: FleetRepoBuilder) -> None:
    fleet.release("nav", "0.9.0", config_schema={"type": "object"}, notes="quietly swapped")
    fleet.write()  # re-signs the edited bytes: the signature is fine, the edit is not
    result = fleet.validate(base="HEAD")
    assert found(result) == [(OLD, fleet.line_of(OLD, "notes:"), None, "release_modified", "error")]
    assert "publish a new version instead" in result.diagnostics[0].message


def test_release_deleted_after_publication_is_rejected(fleet: FleetRepoBuilder) -> None:
    fleet.remove(OLD)
    fleet.remove(f"{OLD}.d/{fleet.release_signers[0].fingerprint}.asc")
    result = fleet.validate(base="HEAD")
    assert found(result) == [(OLD, None, None, "release_deleted", "error")]


def test_new_release_and_new_signatures_are_fine(fleet: FleetRepoBuilder, keys: KeyFactory) -> None:
    fleet.release("nav", "1.1.0", config_schema={"type": "object"})
    fleet.write()
    fleet.add_signer(keys.key("second-signer"))
    fleet.write()
    fleet.sign_release("nav", "0.9.0", fleet.release_signers[1])  # adding a signature is not an edit
    assert fleet.validate(base="HEAD").diagnostics == ()


def test_without_base_an_edit_cannot_be_seen(fleet: FleetRepoBuilder) -> None:
    fleet.release("nav", "0.9.0", config_schema={"type": "object"}, notes="quietly swapped")
    fleet.write()
    assert fleet.validate().diagnostics == ()


def test_unknown_base_ref_is_a_setup_error(fleet: FleetRepoBuilder) -> None:
    with pytest.raises(SetupError, match="no-such-branch"):
        fleet.validate(base="no-such-branch")


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        pytest.param(b"a\nb\nc\n", b"a\nB\nc\n", 2, id="middle-line"),
        pytest.param(b"a\nb\n", b"a\nb\nc\n", 3, id="line-appended"),
        pytest.param(b"a\nb\nc\n", b"a\n", 1, id="lines-cut-clamped-to-last"),
        pytest.param(b"a\nb", b"a\nb\n", 2, id="newline-added"),
        pytest.param(b"a\n", b"", 1, id="emptied"),
    ],
)
def test_first_difference_points_at_the_changed_line(old: bytes, new: bytes, line: int) -> None:
    assert first_difference(old, new) == line
