"""Path conventions: every document kind is recognised by location, and nothing else is."""

from __future__ import annotations

import pytest

from fleetcd.layout import FileKind, classify, is_managed

FPR = "A" * 40


@pytest.mark.parametrize(
    ("path", "kind", "name"),
    [
        ("fleet.yaml", FileKind.FLEET, ""),
        ("devices/amr-001.yaml", FileKind.DEVICE, "amr-001"),
        ("cohorts/canary.yaml", FileKind.COHORT, "canary"),
        ("releases/navstack/1.4.0.yaml", FileKind.RELEASE, "navstack"),
        (f"releases/navstack/1.4.0.yaml.d/{FPR}.asc", FileKind.RELEASE_SIGNATURE, "navstack"),
        ("rollouts/navstack.yaml", FileKind.ROLLOUT, "navstack"),
        (f"approvals/navstack/{FPR}.asc", FileKind.APPROVAL, "navstack"),
        ("configs/navstack/default.yaml", FileKind.CONFIG, "navstack"),
        ("keys/alice.asc", FileKind.KEY, "alice"),
    ],
    ids=lambda v: str(v) if not isinstance(v, str) or "/" in v or "." in v else v,
)
def test_each_kind_is_classified_by_location(path: str, kind: FileKind, name: str) -> None:
    found = classify(path)
    assert found is not None and found.kind is kind and found.name == name


@pytest.mark.parametrize(
    "path",
    [
        "devices/../etc/passwd.yaml",
        "devices/.hidden.yaml",
        "devices/sub/amr.yaml",
        "devices/amr.yml",
        f"releases/navstack/1.0.0.yaml.d/{FPR.lower()}.asc",
        "approvals/navstack/not-a-fingerprint.asc",
    ],
)
def test_unsafe_or_misplaced_paths_are_not_documents(path: str) -> None:
    assert classify(path) is None
    assert is_managed(path)


def test_readme_and_unmanaged_folders_are_ignored() -> None:
    assert not is_managed("devices/README.md")
    assert not is_managed("docs/notes.yaml")
    assert not is_managed(".github/workflows/validate.yml")
