"""Loading a whole fleet snapshot into typed models (fleetcd.loading.fleetspec), pure: bytes in, models out.

A file's location is part of what was reviewed: ``devices/amr-1.yaml`` declaring ``id: amr-2`` would
let one reviewed path steer another robot. Each kind's name must match its location; a signature or
approval without its document is reported (never silently dropped), but not twice when the document
exists and only failed to load; a file in a managed folder that fleetcd cannot place says where it
should be. One bad file never hides the others.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fleetcd.layout import approval_path, release_signature_path, trust_root_path, trust_root_signature_path
from fleetcd.loading.fleetspec import load_spec
from fleetcd.reasons import Reason
from tests.fleetrepo import FleetRepoBuilder, render

FPR = "D" * 40


def fleet_builder() -> FleetRepoBuilder:
    return FleetRepoBuilder(Path("/nonexistent/fleet")).standard()


def snapshot(builder: FleetRepoBuilder) -> dict[str, bytes]:
    files = {path: render(doc) for path, doc in builder.docs.items()}
    return {**files, **builder.raw}


@pytest.fixture
def files() -> dict[str, bytes]:
    return snapshot(fleet_builder())


def problems_of(files: dict[str, bytes]) -> list[tuple[str, str | None, Reason]]:
    _, problems = load_spec(files)
    return sorted((p.file, p.field, p.reason) for p in problems)


# --- the standard fleet -------------------------------------------------------------------------------


def test_a_valid_fleet_loads_every_document_by_identity(files: dict[str, bytes]) -> None:
    spec, problems = load_spec(files)
    assert problems == []
    assert spec.fleet is not None and spec.fleet.model.name == "demo"
    assert sorted(spec.devices) == ["amr-001", "amr-002", "amr-003", "amr-004"]
    assert sorted(spec.cohorts) == ["canary", "production"]
    assert list(spec.releases) == [("nav", "1.0.0")]
    assert spec.release("nav", "1.0.0") is not None and spec.release("nav", "9.9.9") is None
    assert list(spec.rollouts) == ["nav-1-0-0"]
    assert [c.model.file_stem for c in spec.configs["nav"]] == ["default"]
    assert spec.files is files


# --- names must match locations -----------------------------------------------------------------------


def _rename(path: str, field: str, value: Any) -> Callable[[FleetRepoBuilder], str]:
    def change(builder: FleetRepoBuilder) -> str:
        builder.docs[path][field] = value
        return path

    return change


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_rename("devices/amr-001.yaml", "id", "amr-009"), "id"),
        (_rename("cohorts/canary.yaml", "name", "other"), "name"),
        (_rename("releases/nav/1.0.0.yaml", "app", "navx"), "app"),
        (_rename("releases/nav/1.0.0.yaml", "version", "1.0.1"), "version"),
        (_rename("rollouts/nav-1-0-0.yaml", "name", "nav-other"), "name"),
        (_rename("configs/nav/default.yaml", "app", "perception"), "app"),
    ],
    ids=["device-id", "cohort-name", "release-app", "release-version", "rollout-name", "config-app"],
)
def test_a_document_naming_something_else_than_its_location_is_refused(
    change: Callable[[FleetRepoBuilder], str], field: str
) -> None:
    builder = fleet_builder()
    path = change(builder)
    _, problems = load_spec(snapshot(builder))
    assert [(p.file, p.field, p.reason) for p in problems] == [(path, field, Reason.NAME_MISMATCH)]
    assert problems[0].line is not None, "the error points at the line of the field"
    assert "does not match the file's location" in problems[0].message


def test_a_config_whose_scope_does_not_match_its_file_name_is_refused() -> None:
    builder = fleet_builder()
    builder.config("nav", "device-amr-001", {"max_speed": 1.0})
    builder.docs["configs/nav/device-amr-001.yaml"]["target"] = "amr-002"
    assert problems_of(snapshot(builder)) == [
        ("configs/nav/device-amr-001.yaml", "scope", Reason.NAME_MISMATCH)
    ]


def test_a_trust_root_whose_version_does_not_match_its_file_is_refused() -> None:
    builder = fleet_builder()
    doc = dict(builder.trust, version=2)
    files = {**snapshot(builder), trust_root_path(1): render(doc)}
    assert problems_of(files) == [(trust_root_path(1), "version", Reason.NAME_MISMATCH)]


def test_a_misnamed_document_is_left_out_so_nothing_uses_it() -> None:
    builder = fleet_builder()
    builder.docs["devices/amr-001.yaml"]["id"] = "amr-002"  # would shadow the real amr-002
    spec, _ = load_spec(snapshot(builder))
    assert sorted(spec.devices) == ["amr-002", "amr-003", "amr-004"]
    assert spec.devices["amr-002"].path == "devices/amr-002.yaml"


# --- signatures and approvals -------------------------------------------------------------------------


def test_signatures_and_approvals_attach_to_their_documents(files: dict[str, bytes]) -> None:
    sig = release_signature_path("nav", "1.0.0", FPR)
    approval = approval_path("nav-1-0-0", FPR)
    spec, problems = load_spec({**files, sig: b"sig", approval: b"approval"})
    assert problems == []
    release = spec.release("nav", "1.0.0")
    assert release is not None and dict(release.signatures) == {sig: b"sig"}
    assert dict(spec.rollouts["nav-1-0-0"].approvals) == {approval: b"approval"}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (release_signature_path("nav", "2.0.0", FPR), "signature for a release file that does not exist"),
        (approval_path("ghost", FPR), "approval for a rollout that does not exist"),
        (trust_root_signature_path(3, FPR), "signature for a trust-root version that does not exist"),
    ],
    ids=["release-signature", "approval", "trust-root-signature"],
)
def test_an_orphan_signature_is_reported(files: dict[str, bytes], path: str, message: str) -> None:
    _, problems = load_spec({**files, path: b"orphan"})
    assert [(p.file, p.message) for p in problems] == [(path, message)]


def test_a_signature_of_a_release_that_failed_to_load_is_not_also_an_orphan(files: dict[str, bytes]) -> None:
    sig = release_signature_path("nav", "1.0.0", FPR)
    broken = {**files, "releases/nav/1.0.0.yaml": b"kind: Release\napp: [unclosed\n", sig: b"sig"}
    _, problems = load_spec(broken)
    assert {p.file for p in problems} == {"releases/nav/1.0.0.yaml"}


def test_an_approval_of_a_rollout_that_failed_to_load_is_not_also_an_orphan(files: dict[str, bytes]) -> None:
    approval = approval_path("nav-1-0-0", FPR)
    broken = {**files, "rollouts/nav-1-0-0.yaml": b"kind: Rollout\n", approval: b"approval"}
    _, problems = load_spec(broken)
    assert {p.file for p in problems} == {"rollouts/nav-1-0-0.yaml"}


def test_trust_root_signatures_attach_and_the_newest_version_is_the_trust_root() -> None:
    builder = fleet_builder()
    first = dict(builder.trust)
    second = dict(first, version=2)
    files = {
        **snapshot(builder),
        trust_root_path(1): render(first),
        trust_root_path(2): render(second),
        trust_root_signature_path(2, FPR): b"sig",
    }
    spec, problems = load_spec(files)
    assert problems == []
    assert sorted(spec.trust_roots) == [1, 2]
    assert dict(spec.trust_roots[2].signatures) == {trust_root_signature_path(2, FPR): b"sig"}
    assert spec.trust_roots[1].signatures == {}
    assert spec.trust_root is not None and spec.trust_root.version == 2


def test_no_trust_root_files_means_no_trust_root(files: dict[str, bytes]) -> None:
    spec, _ = load_spec(files)
    assert spec.trust_roots == {} and spec.trust_root is None


# --- files fleetcd cannot place -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "hint"),
    [
        ("devices/amr-001.yml", "devices/<id>.yaml"),
        ("devices/sub/amr-001.yaml", "devices/<id>.yaml"),
        ("cohorts/a b.yaml", "cohorts/<name>.yaml"),
        ("releases/nav.yaml", "releases/<app>/<version>.yaml"),
        ("releases/nav/1.0.0.yaml.d/short.asc", ".yaml.d/<FINGERPRINT>.asc"),
        ("rollouts/../x.yaml", "rollouts/<name>.yaml"),
        ("approvals/nav/" + "d" * 40 + ".asc", "approvals/<rollout>/<FINGERPRINT>.asc"),
        ("configs/nav.yaml", "configs/<app>/<default|cohort-NAME|device-ID>.yaml"),
        ("keys/alice.gpg", "keys/<name>.asc"),
        ("trust/root/0.yaml", "trust/root/<version>.yaml"),
    ],
    ids=[
        "yml",
        "nested-device",
        "space",
        "release-without-app-dir",
        "short-fingerprint",
        "traversal",
        "lower-case-fingerprint",
        "config-without-app",
        "gpg-suffix",
        "version-zero",
    ],
)
def test_a_file_in_a_managed_folder_that_cannot_be_placed_says_where_it_belongs(
    files: dict[str, bytes], path: str, hint: str
) -> None:
    _, problems = load_spec({**files, path: b"x: 1\n"})
    matching = [p for p in problems if p.file == path]
    assert len(matching) == 1, problems
    assert matching[0].reason is Reason.INVALID
    assert hint in matching[0].message and "unexpected file here" in matching[0].message


@pytest.mark.parametrize(
    "path", ["README.md", "docs/notes.md", ".github/workflows/ci.yaml", "devices/README.md"]
)
def test_files_outside_managed_folders_and_readmes_are_ignored(files: dict[str, bytes], path: str) -> None:
    assert load_spec({**files, path: b"anything"})[1] == []


def test_keys_are_collected_by_path(files: dict[str, bytes]) -> None:
    spec, problems = load_spec({**files, "keys/alice.asc": b"-----BEGIN PGP PUBLIC KEY BLOCK-----"})
    assert problems == [] and spec.keys == {"keys/alice.asc": b"-----BEGIN PGP PUBLIC KEY BLOCK-----"}


# --- config sets --------------------------------------------------------------------------------------


def test_the_config_set_holds_every_config_file_even_one_that_does_not_load(files: dict[str, bytes]) -> None:
    broken = {**files, "configs/nav/cohort-canary.yaml": b"values: [unclosed\n"}
    spec, problems = load_spec(broken)
    assert [p.file for p in problems] == ["configs/nav/cohort-canary.yaml"]
    assert [c.model.file_stem for c in spec.configs["nav"]] == ["default"]
    covered = spec.config_set("nav")
    assert covered == spec.config_set("nav")
    assert spec.config_set("perception") != covered


def test_one_bad_file_of_each_kind_still_loads_all_the_rest(files: dict[str, bytes]) -> None:
    bad = b"{unclosed"
    broken = {
        **files,
        "devices/amr-009.yaml": bad,
        "cohorts/broken.yaml": bad,
        "releases/nav/2.0.0.yaml": bad,
        "rollouts/broken.yaml": bad,
        "configs/nav/device-amr-001.yaml": bad,
    }
    spec, problems = load_spec(broken)
    assert len(problems) == 5
    assert sorted(spec.devices) == ["amr-001", "amr-002", "amr-003", "amr-004"]
    assert list(spec.rollouts) == ["nav-1-0-0"] and list(spec.releases) == [("nav", "1.0.0")]
