"""The controller's git object layer at its edges: sizes read before content, refusals before writes.

``blob_size`` lets the controller refuse a robot's oversized report from the object header alone
(the report is untrusted; loading it first would be the attack). It must agree with ``read_blob``
on what is *not* there: a tree, a missing path, a ref that leads to no commit. ``update_refs`` and
``write_tree`` refuse names and contents before anything is written.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pygit2
import pytest

from fleetcd.compat import UTC
from fleetcd.git.objects import (
    Identity,
    blob_size,
    commit,
    object_batch,
    read_blob,
    ref_target,
    update_refs,
    write_tree,
)
from tests.gitrepos import bare_repo, git

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
AUTHOR = Identity("fleetcd controller", "controller@fleet.test")
STATUS = b'{"activity":"healthy","version":"1.2.0"}\n'


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    return pygit2.Repository(str(bare_repo(tmp_path / "repo.git")))


@pytest.fixture
def reported(repo: pygit2.Repository) -> pygit2.Oid:
    """A robot's status commit: status.json and a directory, under refs/status/amr-1."""
    tree = write_tree(repo, {"status.json": STATUS, "logs/last.txt": b"x" * 1000})
    return commit(repo, "refs/status/amr-1", tree, "report", [], AUTHOR, WHEN)


def test_the_size_of_a_report_is_read_from_its_header_and_matches_its_content(
    repo: pygit2.Repository, reported: pygit2.Oid
) -> None:
    assert blob_size(repo, "refs/status/amr-1", "status.json") == len(STATUS)
    assert blob_size(repo, reported, "logs/last.txt") == 1000
    assert read_blob(repo, reported, "status.json") == STATUS


@pytest.mark.parametrize("path", ["logs", "missing.json", "status.json/inner", "", "../status.json"], ids=str)
def test_what_read_blob_would_not_return_has_no_size_either(
    repo: pygit2.Repository, reported: pygit2.Oid, path: str
) -> None:
    assert read_blob(repo, reported, path) is None
    assert blob_size(repo, reported, path) is None


def test_a_status_ref_that_points_at_a_blob_or_a_tree_has_no_report(
    repo: pygit2.Repository, reported: pygit2.Oid
) -> None:
    # a hostile robot can push any object under its ref; only a commit is a report
    blob = repo.create_blob(STATUS)
    found = repo.get(reported)
    assert found is not None
    tree = found.peel(pygit2.Commit).tree.id
    repo.references.create("refs/status/blob", blob)
    repo.references.create("refs/status/tree", tree)
    for ref in ("refs/status/blob", "refs/status/tree", "refs/status/absent"):
        assert blob_size(repo, ref, "status.json") is None
        assert read_blob(repo, ref, "status.json") is None
    assert blob_size(repo, pygit2.Oid(hex="f" * 40), "status.json") is None


def test_an_annotated_tag_of_a_report_is_followed_to_its_commit(
    repo: pygit2.Repository, reported: pygit2.Oid
) -> None:
    git("tag", "-a", "-m", "t", "v1", str(reported), cwd=Path(repo.path))
    tag = ref_target(repo, "refs/tags/v1")
    assert tag is not None and tag != reported
    assert blob_size(repo, "refs/tags/v1", "status.json") == len(STATUS)


def test_a_symbolic_ref_is_followed(repo: pygit2.Repository, reported: pygit2.Oid) -> None:
    repo.references.create("refs/status/alias", "refs/status/amr-1")
    assert ref_target(repo, "refs/status/alias") == reported
    assert blob_size(repo, "refs/status/alias", "status.json") == len(STATUS)


def test_a_huge_report_is_sized_without_being_read(repo: pygit2.Repository) -> None:
    big = b"{" * (8 * 1024 * 1024)
    tree = write_tree(repo, {"status.json": big})
    oid = commit(repo, "refs/status/amr-2", tree, "huge", [], AUTHOR, WHEN)
    assert blob_size(repo, oid, "status.json") == len(big)


# --- refusals before any write ------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        "HEAD",
        "main",
        "refs/heads/a..b",
        "refs/heads/x.lock",
        "refs/heads/a b",
        "refs/heads/",
        "refs/heads/~1",
    ],
)
def test_a_ref_name_git_would_refuse_or_that_is_not_under_refs_is_refused(
    repo: pygit2.Repository, reported: pygit2.Oid, ref: str
) -> None:
    with pytest.raises(ValueError):
        update_refs(repo, {ref: (None, reported)}, message="m")
    assert git("for-each-ref", "--format=%(refname)", cwd=Path(repo.path)).split() == ["refs/status/amr-1"]


def test_refs_cannot_point_into_an_unfinished_object_batch(repo: pygit2.Repository) -> None:
    with object_batch(repo) as staged:
        tree = write_tree(staged, {"a.yaml": b"a: 1\n"})
        oid = commit(staged, None, tree, "m", [], AUTHOR, WHEN)
        with pytest.raises(ValueError, match="object batch"):
            update_refs(staged, {"refs/heads/main": (None, oid)}, message="m")
    update_refs(repo, {"refs/heads/main": (None, oid)}, message="m")  # after the batch: fine
    assert read_blob(repo, "refs/heads/main", "a.yaml") == b"a: 1\n"


@pytest.mark.parametrize(
    "files",
    [{"a\0b.yaml": b"x"}, {"a/\0/b.yaml": b"x"}, {"": b"x"}, {"a/": b"x"}],
    ids=["nul-in-name", "nul-segment", "empty-path", "trailing-slash"],
)
def test_a_path_git_cannot_hold_is_refused(repo: pygit2.Repository, files: dict[str, bytes]) -> None:
    with pytest.raises(ValueError):
        write_tree(repo, files)


def test_content_that_is_not_bytes_is_refused_naming_the_file(repo: pygit2.Repository) -> None:
    with pytest.raises(TypeError) as caught:
        write_tree(repo, {"configs/nav/default.yaml": "text, not bytes"})  # type: ignore[dict-item]
    assert "configs/nav/default.yaml" in str(caught.value)


def test_a_base_that_is_not_a_tree_is_refused(repo: pygit2.Repository, reported: pygit2.Oid) -> None:
    with pytest.raises(ValueError, match="not a tree"):
        write_tree(repo, {"a": b"x"}, base_tree=reported)  # a commit id, not its tree
