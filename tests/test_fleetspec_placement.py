"""Where a file sits on main is part of what it says (fleetcd/loading/fleetspec.py, pure).

A document whose name or app disagrees with its path, a signature or approval whose document does
not exist, a typo in a file name, a missing fleet.yaml: each is a diagnostic naming the file (and
the field and line where there is one), never a silently dropped robot, release or approval. The
rest of the snapshot still loads, so one bad file shows every other problem too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fleetcd.layout import withdrawal_path
from fleetcd.loading.fleetspec import FleetSpec, load_spec
from fleetcd.reasons import Reason
from tests.fleetrepo import FleetRepoBuilder, render

FPR = "C" * 40
SIG = b"-----BEGIN PGP SIGNATURE-----\nC\n-----END PGP SIGNATURE-----\n"


def snapshot(b: FleetRepoBuilder) -> dict[str, bytes]:
    files = {path: render(doc) for path, doc in b.docs.items()} | b.raw
    return files | {f"trust/root/{d['version']}.yaml": render(d) for d in b.trust_versions}


def loaded(
    tmp_path: Path, edit: Callable[[FleetRepoBuilder, dict[str, bytes]], Any]
) -> tuple[FleetSpec, set[tuple[str, str | None, Reason]]]:
    b = FleetRepoBuilder(tmp_path).standard()
    files = snapshot(b)
    edit(b, files)
    spec, problems = load_spec(files)
    return spec, {(p.file, p.field, p.reason) for p in problems}


def _moved_config(_b: FleetRepoBuilder, files: dict[str, bytes]) -> None:
    files["configs/perception/default.yaml"] = files.pop("configs/nav/default.yaml")


def _renamed_device(_b: FleetRepoBuilder, files: dict[str, bytes]) -> None:
    files["devices/amr-777.yaml"] = files.pop("devices/amr-004.yaml")


def _renamed_rollout(_b: FleetRepoBuilder, files: dict[str, bytes]) -> None:
    files["rollouts/nav-2.yaml"] = files.pop("rollouts/nav-1-0-0.yaml")


def _misfiled_release(_b: FleetRepoBuilder, files: dict[str, bytes]) -> None:
    files["releases/nav/1.0.1.yaml"] = files.pop("releases/nav/1.0.0.yaml")


def _misfiled_withdrawal(b: FleetRepoBuilder, files: dict[str, bytes]) -> None:
    doc = b.withdrawal("nav", "1.0.0", "a bad map")
    files[withdrawal_path("perception", "1.0.0")] = render(doc)


def _withdrawal_other_version(b: FleetRepoBuilder, files: dict[str, bytes]) -> None:
    doc = b.withdrawal("nav", "1.0.0", "a bad map")
    files[withdrawal_path("nav", "1.0.1")] = render(doc)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_moved_config, ("configs/perception/default.yaml", "app", Reason.NAME_MISMATCH)),
        (_renamed_device, ("devices/amr-777.yaml", "id", Reason.NAME_MISMATCH)),
        (_renamed_rollout, ("rollouts/nav-2.yaml", "name", Reason.NAME_MISMATCH)),
        (_misfiled_release, ("releases/nav/1.0.1.yaml", "version", Reason.NAME_MISMATCH)),
        (_misfiled_withdrawal, ("withdrawals/perception/1.0.0.yaml", "app", Reason.NAME_MISMATCH)),
        (_withdrawal_other_version, ("withdrawals/nav/1.0.1.yaml", "version", Reason.NAME_MISMATCH)),
    ],
    ids=[
        "config-app",
        "device-id",
        "rollout-name",
        "release-version",
        "withdrawal-app",
        "withdrawal-version",
    ],
)
def test_a_document_that_disagrees_with_its_path_is_refused_naming_the_field(
    tmp_path: Path,
    edit: Callable[[FleetRepoBuilder, dict[str, bytes]], None],
    expected: tuple[str, str, Reason],
) -> None:
    spec, problems = loaded(tmp_path, edit)
    assert expected in problems
    assert "amr-001" in spec.devices, "the rest of the snapshot still loads"


def test_a_trust_root_signature_without_its_version_is_named(tmp_path: Path) -> None:
    def orphan(_b: FleetRepoBuilder, files: dict[str, bytes]) -> None:
        files[f"trust/root/7.yaml.d/{FPR}.asc"] = SIG

    _, problems = loaded(tmp_path, orphan)
    assert {p[0] for p in problems} == {f"trust/root/7.yaml.d/{FPR}.asc"}


def test_an_approval_of_a_withdrawal_that_does_not_exist_is_named(tmp_path: Path) -> None:
    """An approval left behind when the withdrawal was deleted (lifted) must not look like one."""

    def orphan(_b: FleetRepoBuilder, files: dict[str, bytes]) -> None:
        files[f"withdrawals/nav/1.0.0.yaml.d/{FPR}.asc"] = SIG

    spec, problems = loaded(tmp_path, orphan)
    assert {p[0] for p in problems} == {f"withdrawals/nav/1.0.0.yaml.d/{FPR}.asc"}
    assert spec.withdrawal("nav", "1.0.0") is None


def test_a_withdrawal_signature_beside_its_withdrawal_is_kept_as_its_approval(tmp_path: Path) -> None:
    def approved(b: FleetRepoBuilder, files: dict[str, bytes]) -> None:
        files[withdrawal_path("nav", "1.0.0")] = render(b.withdrawal("nav", "1.0.0", "a bad map"))
        files[f"withdrawals/nav/1.0.0.yaml.d/{FPR}.asc"] = SIG

    spec, problems = loaded(tmp_path, approved)
    assert problems == set()
    assert spec.withdrawal_approvals[("nav", "1.0.0")] == {f"withdrawals/nav/1.0.0.yaml.d/{FPR}.asc": SIG}
    withdrawn = spec.withdrawal("nav", "1.0.0")
    assert withdrawn is not None and withdrawn.reason == "a bad map"


@pytest.mark.parametrize(
    "path",
    [
        "devices/amr-005.yml",
        "cohorts/canary.yaml.bak",
        "releases/nav.yaml",
        "keys/alice.gpg",
        "trust/root/one.yaml",
    ],
)
def test_a_stray_file_in_a_managed_folder_is_an_error_not_ignored(tmp_path: Path, path: str) -> None:
    """``devices/amr-005.yml``: a typo that would otherwise silently leave a robot out of the fleet."""

    def stray(_b: FleetRepoBuilder, files: dict[str, bytes]) -> None:
        files[path] = b"apiVersion: fleetcd.dev/v1\n"

    _, problems = loaded(tmp_path, stray)
    assert (path, None, Reason.INVALID) in problems


def test_readme_files_and_files_outside_the_managed_folders_are_allowed(tmp_path: Path) -> None:
    def notes(_b: FleetRepoBuilder, files: dict[str, bytes]) -> None:
        files["devices/README.md"] = b"# robots\n"
        files["README.md"] = b"# fleet\n"
        files["docs/runbook.yaml"] = b"not: a fleet document\n"

    _, problems = loaded(tmp_path, notes)
    assert problems == set()


def test_a_snapshot_without_fleet_yaml_says_so_and_loads_the_rest(tmp_path: Path) -> None:
    def no_fleet(_b: FleetRepoBuilder, files: dict[str, bytes]) -> None:
        del files["fleet.yaml"]

    spec, problems = loaded(tmp_path, no_fleet)
    assert ("fleet.yaml", None, Reason.UNKNOWN_REFERENCE) in problems
    assert set(spec.rollouts) == {"nav-1-0-0"}
