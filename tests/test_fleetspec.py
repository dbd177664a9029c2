"""Loading a whole snapshot: per-file problems are collected, names must match locations."""

from __future__ import annotations

from fleetcd.loading.fleetspec import load_spec
from fleetcd.reasons import Reason
from tests.test_documents import DEVICE

FPR = "B" * 40
FLEET = b"""\
apiVersion: fleetcd.dev/v1
kind: Fleet
name: demo
"""  # whom the fleet trusts lives in trust/root/<N>.yaml; fleet.yaml needs only its name


def test_device_named_differently_from_its_file_is_reported() -> None:
    spec, problems = load_spec({"fleet.yaml": FLEET, "devices/amr-002.yaml": DEVICE})
    assert [(p.file, p.field, p.reason) for p in problems] == [
        ("devices/amr-002.yaml", "id", Reason.NAME_MISMATCH)
    ]
    assert spec.devices == {}


def test_one_bad_file_does_not_hide_the_others() -> None:
    spec, problems = load_spec(
        {
            "fleet.yaml": FLEET,
            "devices/amr-001.yaml": DEVICE,
            "devices/bad.yaml": b"id: [unclosed",
            "devices/ok.yml": DEVICE,
        }
    )
    assert set(spec.devices) == {"amr-001"}
    assert sorted(p.file for p in problems) == ["devices/bad.yaml", "devices/ok.yml"]


def test_missing_fleet_file_is_an_error() -> None:
    _, problems = load_spec({"devices/amr-001.yaml": DEVICE})
    assert [p.file for p in problems] == ["fleet.yaml"]


def test_signatures_attach_to_their_release_and_orphans_are_reported() -> None:
    files = {
        "fleet.yaml": FLEET,
        f"releases/nav/1.0.0.yaml.d/{FPR}.asc": b"sig",
    }
    _, problems = load_spec(files)
    assert [p.message for p in problems] == ["signature for a release file that does not exist"]


def test_readme_files_in_managed_folders_are_ignored() -> None:
    _, problems = load_spec({"fleet.yaml": FLEET, "devices/README.md": b"# robots"})
    assert problems == []
