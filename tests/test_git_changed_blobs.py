"""What changed between two commits of main (fleetcd.git.trees.changed_blobs), on real git repositories.

``controller run`` re-reads only the files this returns and keeps its parsed copy of every other
file, so a change it misses is a change the controller never acts on. Every way a commit can change
a path is here: edit, add, delete, rename, a file that becomes a directory (and back), a symlink, a
mode change, a change deep in a tree of many; and a cache that lost the old tree reads it all.
"""

from __future__ import annotations

import os
from pathlib import Path

import pygit2
import pytest

from fleetcd.errors import SetupError
from fleetcd.git.trees import changed_blobs, commit_tree_id
from fleetcd.git.worktree import changed_paths, commit_all, configured_author, init_repo
from tests.gitrepos import bare_repo, commit_files, git, work_repo

DEVICE = b"apiVersion: fleetcd.dev/v1\nkind: Device\n"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = work_repo(tmp_path / "fleet")
    commit_files(path, {"fleet.yaml": b"name: demo\n", "devices/a.yaml": DEVICE, "devices/b.yaml": DEVICE})
    return path


def tree_of(work: Path, rev: str = "HEAD") -> str:
    return git("rev-parse", f"{rev}^{{tree}}", cwd=work).strip()


def diff(work: Path, change: dict[str, bytes | None]) -> dict[str, bytes | None]:
    """What changed_blobs reports for one commit of ``change`` on top of HEAD."""
    before = tree_of(work)
    commit_files(work, change)
    found = changed_blobs(pygit2.Repository(str(work)), before, tree_of(work))
    assert found is not None
    return found


def test_an_edit_reports_the_new_bytes(work: Path) -> None:
    assert diff(work, {"devices/a.yaml": DEVICE + b"site: ber\n"}) == {
        "devices/a.yaml": DEVICE + b"site: ber\n"
    }


def test_an_added_file_reports_its_bytes(work: Path) -> None:
    assert diff(work, {"cohorts/canary.yaml": b"kind: Cohort\n"}) == {
        "cohorts/canary.yaml": b"kind: Cohort\n"
    }


def test_a_deleted_file_reports_none(work: Path) -> None:
    assert diff(work, {"devices/b.yaml": None}) == {"devices/b.yaml": None}


def test_a_rename_is_a_deletion_and_an_addition(work: Path) -> None:
    before = tree_of(work)
    git("mv", "devices/a.yaml", "devices/c.yaml", cwd=work)
    git("commit", "--quiet", "-m", "rename", cwd=work)
    found = changed_blobs(pygit2.Repository(str(work)), before, tree_of(work))
    assert found == {"devices/a.yaml": None, "devices/c.yaml": DEVICE}


def test_a_file_that_becomes_a_directory_reports_both_paths(work: Path) -> None:
    before = tree_of(work)
    git("rm", "--quiet", "devices/a.yaml", cwd=work)
    (work / "devices" / "a.yaml").mkdir()
    (work / "devices" / "a.yaml" / "inner.yaml").write_bytes(DEVICE)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "file to dir", cwd=work)
    found = changed_blobs(pygit2.Repository(str(work)), before, tree_of(work))
    assert found == {"devices/a.yaml": None, "devices/a.yaml/inner.yaml": DEVICE}


def test_a_directory_removed_reports_every_file_under_it(work: Path) -> None:
    assert diff(work, {"devices": None}) == {"devices/a.yaml": None, "devices/b.yaml": None}


def test_a_file_replaced_by_a_symlink_reports_the_link_target_as_its_bytes(work: Path) -> None:
    # The reader downstream refuses symlinks; what matters here is that the path is reported.
    before = tree_of(work)
    (work / "devices" / "a.yaml").unlink()
    os.symlink("/etc/passwd", work / "devices" / "a.yaml")
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "symlink", cwd=work)
    found = changed_blobs(pygit2.Repository(str(work)), before, tree_of(work))
    assert found == {"devices/a.yaml": b"/etc/passwd"}


def test_a_mode_change_alone_is_reported(work: Path) -> None:
    before = tree_of(work)
    git("update-index", "--chmod=+x", "devices/a.yaml", cwd=work)
    git("commit", "--quiet", "-m", "chmod", cwd=work)
    found = changed_blobs(pygit2.Repository(str(work)), before, tree_of(work))
    assert found == {"devices/a.yaml": DEVICE}


def test_identical_trees_report_nothing(work: Path) -> None:
    tree = tree_of(work)
    commit_files(work, {}, message="empty commit")
    assert tree_of(work) == tree
    assert changed_blobs(pygit2.Repository(str(work)), tree, tree) == {}


def test_one_id_given_twice_is_still_checked_before_it_is_called_unchanged(work: Path) -> None:
    repo = pygit2.Repository(str(work))
    commit = git("rev-parse", "HEAD", cwd=work).strip()
    assert changed_blobs(repo, "3" * 40, "3" * 40) is None  # unknown to the repository: read it all
    assert changed_blobs(repo, commit, commit) is None  # a commit is not a tree
    blob = git("rev-parse", "HEAD:fleet.yaml", cwd=work).strip()
    assert changed_blobs(repo, blob, blob) is None  # nor is a blob
    many = {f"devices/{s:02x}/robot-{n:03d}.json": DEVICE for s in range(16) for n in range(40)}
    commit_files(work, many)
    assert changed_blobs(repo, tree_of(work), tree_of(work)) == {}
    assert diff(work, {"devices/0a/robot-007.json": None}) == {"devices/0a/robot-007.json": None}


def test_one_change_deep_among_many_files_is_the_only_one_reported(work: Path) -> None:
    many = {f"devices/site-{s}/robot-{n:03d}.yaml": DEVICE for s in range(5) for n in range(60)}
    commit_files(work, many)
    assert diff(work, {"devices/site-3/robot-042.yaml": DEVICE + b"x: 1\n"}) == {
        "devices/site-3/robot-042.yaml": DEVICE + b"x: 1\n"
    }


def test_an_old_tree_the_cache_no_longer_has_means_read_everything(work: Path) -> None:
    assert changed_blobs(pygit2.Repository(str(work)), "1" * 40, tree_of(work)) is None


def test_a_new_tree_that_is_missing_is_a_setup_error(work: Path) -> None:
    with pytest.raises(SetupError, match="not a tree"):
        changed_blobs(pygit2.Repository(str(work)), tree_of(work), "2" * 40)


def test_a_commit_id_passed_as_a_tree_is_not_mistaken_for_one(work: Path) -> None:
    commit = git("rev-parse", "HEAD", cwd=work).strip()
    repo = pygit2.Repository(str(work))
    assert changed_blobs(repo, commit, tree_of(work)) is None  # "old tree unknown": read it all
    with pytest.raises(SetupError):
        changed_blobs(repo, tree_of(work), commit)


def test_commit_tree_id_is_equal_exactly_when_the_content_is(work: Path) -> None:
    repo = pygit2.Repository(str(work))
    first = git("rev-parse", "HEAD", cwd=work).strip()
    second = commit_files(work, {}, message="nothing changed")
    third = commit_files(work, {"fleet.yaml": b"name: demo \n"})
    assert commit_tree_id(repo, first) == commit_tree_id(repo, second) != commit_tree_id(repo, third)
    with pytest.raises(SetupError, match="not a commit"):
        commit_tree_id(repo, tree_of(work))


# --- the operator's work tree (fleetcd.git.worktree) -------------------------------------------------------


def test_commit_all_takes_deletions_and_respects_gitignore(tmp_path: Path) -> None:
    path = tmp_path / "fleet"
    init_repo(path)
    (path / ".gitignore").write_text("*.secret\n")
    (path / "fleet.yaml").write_bytes(b"name: demo\n")
    (path / "old.yaml").write_bytes(b"x\n")
    (path / "key.secret").write_bytes(b"never commit me\n")
    commit_all(path, "first", "Op <op@fleet.test>")
    (path / "old.yaml").unlink()
    second = commit_all(path, "second", "Op <op@fleet.test>")
    files = git("ls-tree", "-r", "--name-only", second, cwd=path).split()
    assert files == [".gitignore", "fleet.yaml"]
    assert (
        git("log", "-1", "--format=%an <%ae>|%cn <%ce>", cwd=path).strip()
        == "Op <op@fleet.test>|Op <op@fleet.test>"
    )


def test_init_repo_keeps_an_existing_repository_and_its_history(work: Path) -> None:
    head = git("rev-parse", "HEAD", cwd=work).strip()
    init_repo(work, branch="other")
    assert git("rev-parse", "HEAD", cwd=work).strip() == head


@pytest.mark.parametrize("author", ["Op", "<op@fleet.test>", "Op <op @fleet.test>", "Op <a><b>", ""])
def test_commit_all_refuses_an_author_that_is_not_name_and_email(work: Path, author: str) -> None:
    head = git("rev-parse", "HEAD", cwd=work).strip()
    with pytest.raises(SetupError, match="Name <email>"):
        commit_all(work, "x", author)
    assert git("rev-parse", "HEAD", cwd=work).strip() == head


def test_commit_all_outside_a_repository_is_a_setup_error(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="not a git work tree"):
        commit_all(tmp_path, "x", "Op <op@fleet.test>")
    with pytest.raises(SetupError, match="not a git work tree"):
        changed_paths(tmp_path)


def test_changed_paths_lists_every_kind_of_local_edit_but_not_ignored_files(work: Path) -> None:
    (work / ".gitignore").write_text("*.tmp\n")
    git("add", ".gitignore", cwd=work)
    git("commit", "--quiet", "-m", "ignore", cwd=work)
    (work / "devices" / "a.yaml").write_bytes(DEVICE + b"edited: true\n")  # modified
    (work / "devices" / "b.yaml").unlink()  # deleted
    (work / "new.yaml").write_bytes(b"x\n")  # untracked
    (work / "scratch.tmp").write_bytes(b"x\n")  # ignored
    (work / "staged.yaml").write_bytes(b"y\n")
    git("add", "staged.yaml", cwd=work)  # staged
    assert changed_paths(work) == ["devices/a.yaml", "devices/b.yaml", "new.yaml", "staged.yaml"]


def test_a_clean_work_tree_has_no_changed_paths(work: Path) -> None:
    assert changed_paths(work) == []


def test_configured_author_reads_git_config_and_is_none_without_it(tmp_path: Path) -> None:
    path = work_repo(tmp_path / "w")
    git("config", "user.name", "Fleet Op", cwd=path)
    git("config", "user.email", "op@fleet.test", cwd=path)
    assert configured_author(path) == "Fleet Op <op@fleet.test>"
    assert configured_author(bare_repo(tmp_path / "nothing.git").parent / "missing") is None
