"""``fleetcd robot add|retire|rotate-key`` refusals docs/cli.md promises and tests/test_robot_lifecycle.py
leaves out, on the same real fleet work tree and gitolite-admin checkout.

Each refusal must leave both repositories and ``--out`` exactly as they were: a robot folder that
already exists is never overwritten (it may hold the only copy of a robot's key), a gitolite
checkout with someone's unfinished edits is not committed over, a cohort that cannot take the robot
by a one-line edit is left for a person. The exit code says whose move it is (docs/cli.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetcd.cli.exitcodes import Exit
from tests.clirun import fleetcd
from tests.fleetrepo import FleetRepoBuilder
from tests.test_ops_switches import AUTHOR
from tests.test_robot_lifecycle import _git, _heads, _keygen, _unchanged, add, admin, fleet

__all__ = ["admin", "fleet"]  # the fixtures of tests/test_robot_lifecycle.py


def rotate(
    capsys: pytest.CaptureFixture[str], fleet: FleetRepoBuilder, admin: Path, robot: str, *extra: str
) -> tuple[int, str, str]:
    args = ["robot", "rotate-key", robot, "--repo", str(fleet.root), *AUTHOR, "--gitolite-admin", str(admin)]
    return fleetcd(capsys, *args, *extra)


def test_a_robot_folder_that_already_exists_is_never_overwritten(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out/ID`` left from an earlier attempt may hold the only copy of that robot's private key."""
    folder = fleet.root.parent / "robots" / "amr-010"
    folder.mkdir(parents=True)
    (folder / "id_ed25519").write_text("the only copy\n")
    heads = _heads(fleet, admin)
    code, out, err = add(capsys, fleet, admin, "amr-010")
    assert code == Exit.SETUP, out + err
    assert f"{folder} already exists" in err
    assert sorted(p.name for p in folder.iterdir()) == ["id_ed25519"]
    assert (folder / "id_ed25519").read_text() == "the only copy\n"
    assert (fleet.git("rev-parse", "HEAD"), _git(admin, "rev-parse", "HEAD")) == heads
    assert fleet.git("status", "--porcelain") == "" and _git(admin, "status", "--porcelain") == ""


def test_a_gitolite_checkout_with_other_edits_is_refused_before_anything_is_written(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = admin / "conf" / "gitolite.conf"
    conf.write_text(conf.read_text() + "# someone's unfinished edit\n")
    heads = _heads(fleet, admin)
    code, out, err = add(capsys, fleet, admin, "amr-011")
    assert code == Exit.SETUP, out + err
    assert str(admin) in err and "conf/gitolite.conf" in err
    assert _heads(fleet, admin) == heads
    assert fleet.git("status", "--porcelain") == ""
    assert _git(admin, "status", "--porcelain").split() == ["M", "conf/gitolite.conf"]
    assert not any((fleet.root.parent / "robots").glob("*"))


def test_a_cohort_that_takes_no_one_line_edit_is_left_for_a_person(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flow list over two lines: appending by text could break it, so nothing is guessed."""
    fleet.file(
        "cohorts/staging.yaml",
        "apiVersion: fleetcd.dev/v1\nkind: Cohort\nname: staging\nstage: staging\n"
        "devices: [amr-001,\n          amr-002]\n",
    )
    fleet.commit("staging in flow style")
    heads = _heads(fleet, admin)
    code, out, err = add(capsys, fleet, admin, "amr-012")
    assert code == Exit.SETUP, out + err
    assert "cohorts/staging.yaml" in err and "by hand" in err
    _unchanged(fleet, admin, heads)


@pytest.mark.parametrize("label", ["dock-b", "=b", ""], ids=["no-equals", "no-name", "empty"])
def test_a_label_that_is_not_name_equals_value_is_usage(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str], label: str
) -> None:
    heads = _heads(fleet, admin)
    code, _, err = add(capsys, fleet, admin, "amr-013", "--label", label)
    assert code == Exit.USAGE and "NAME=VALUE" in err
    _unchanged(fleet, admin, heads)


@pytest.mark.parametrize("given", ["both", "neither"])
def test_rotate_key_needs_exactly_one_of_out_and_a_public_key(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, given: str
) -> None:
    extra = ["--out", str(tmp_path / "new"), "--ssh-public-key", str(_keygen(tmp_path / "k"))]
    heads = _heads(fleet, admin)
    code, _, err = rotate(capsys, fleet, admin, "amr-001", *(extra if given == "both" else []))
    assert code == Exit.USAGE and "exactly one of --out and --ssh-public-key" in err
    assert _heads(fleet, admin) == heads and not (tmp_path / "new").exists()


def test_rotating_the_key_of_an_unknown_robot_names_its_missing_device_file(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = rotate(capsys, fleet, admin, "amr-404", "--out", str(tmp_path / "new"))
    assert code == Exit.INVALID and "devices/amr-404.yaml" in err and "'amr-404'" in err
    assert not (tmp_path / "new").exists()


def test_rotating_the_key_of_a_robot_gitolite_has_no_key_for_names_the_key_file(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A robot whose key was removed by hand: rotating would quietly enrol a key, not rotate one."""
    _git(admin, "rm", "-q", "keydir/amr-002.pub")
    _git(admin, "commit", "-qm", "amr-002's key removed by hand")
    heads = _heads(fleet, admin)
    code, _, err = rotate(capsys, fleet, admin, "amr-002", "--out", str(tmp_path / "new"))
    assert code == Exit.INVALID, err
    assert "keydir/amr-002.pub" in err
    assert _heads(fleet, admin) == heads and not (tmp_path / "new").exists()
