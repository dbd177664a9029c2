"""The commit an operator edit makes in a real local work tree (controller.ops.local, fleetcd.git.worktree).

``pause``/``resume``/``rollback``/``deploy`` write the commit a person would; so they must refuse to
sweep someone else's uncommitted edits into it, refuse a change that adds validation errors (the
missing approvals of the edited rollout aside: reviewers add those), never leave a half-applied edit
behind a bad ``--author``, and write a message git tools show well. Real git repositories, real files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.ops.local import (
    MESSAGE_WIDTH,
    WorkTree,
    apply,
    check_change,
    finish,
    open_work_tree,
    wrap_message,
)
from fleetcd.errors import InvalidContent, SetupError
from fleetcd.git.worktree import changed_paths, commit_all, configured_author, init_repo
from fleetcd.reasons import Reason
from tests.fleetrepo import FleetRepoBuilder, render
from tests.gitrepos import git
from tests.gpgkeys import KeyFactory

AUTHOR = "Ops Person <ops@fleet.test>"


@pytest.fixture
def fleet(tmp_path: Path) -> FleetRepoBuilder:
    built = FleetRepoBuilder(tmp_path / "fleet").standard()
    built.trust["approvals"] = {"staging": 0, "canary": 0, "production": 0}
    built.write()
    init_repo(built.root)
    commit_all(built.root, "initial fleet", AUTHOR)
    return built


# --- init_repo / commit_all / changed_paths / configured_author ---------------------------------------


def test_init_repo_makes_a_main_branch_and_keeps_an_existing_repository(tmp_path: Path) -> None:
    init_repo(tmp_path / "new")
    assert git("symbolic-ref", "HEAD", cwd=tmp_path / "new").strip() == "refs/heads/main"
    (tmp_path / "new" / "f").write_text("x")
    commit_all(tmp_path / "new", "first", AUTHOR)
    init_repo(tmp_path / "new", branch="other")  # an existing repository is left alone
    assert git("symbolic-ref", "HEAD", cwd=tmp_path / "new").strip() == "refs/heads/main"
    assert git("log", "--format=%s", cwd=tmp_path / "new").strip() == "first"


def test_commit_all_includes_deletions_and_respects_gitignore(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    init_repo(root)
    (root / ".gitignore").write_text(".fleetcd/\n")
    (root / "a.yaml").write_text("a: 1\n")
    (root / "b.yaml").write_text("b: 1\n")
    commit_all(root, "two files", AUTHOR)
    (root / "b.yaml").unlink()
    (root / ".fleetcd").mkdir()
    (root / ".fleetcd" / "secret").write_text("private key material")
    made = commit_all(root, "drop b", AUTHOR)
    assert git("show", "--name-status", "--format=", made, cwd=root).split() == ["D", "b.yaml"]
    assert "secret" not in git("ls-files", cwd=root)


def test_commit_all_sets_author_and_committer(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    init_repo(root)
    (root / "f").write_text("x")
    made = commit_all(root, "subject\n\nbody", "  Jane Doe   <jane@fleet.test>  ")
    assert git("show", "-s", "--format=%an <%ae>|%cn <%ce>|%s", made, cwd=root).strip() == (
        "Jane Doe <jane@fleet.test>|Jane Doe <jane@fleet.test>|subject"
    )


@pytest.mark.parametrize("author", ["Jane", "<jane@x>", "Jane <jane @x>", "Jane <a><b>", ""], ids=repr)
def test_commit_all_refuses_an_author_not_of_the_name_email_form(tmp_path: Path, author: str) -> None:
    root = tmp_path / "repo"
    init_repo(root)
    with pytest.raises(SetupError, match="not of the form"):
        commit_all(root, "m", author)


def test_commit_all_outside_a_repository_is_a_setup_error(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="not a git work tree"):
        commit_all(tmp_path, "m", AUTHOR)
    with pytest.raises(SetupError, match="not a git work tree"):
        changed_paths(tmp_path)


def test_changed_paths_lists_modified_staged_deleted_and_untracked(fleet: FleetRepoBuilder) -> None:
    root = fleet.root
    assert changed_paths(root) == []
    (root / "devices" / "amr-001.yaml").write_text("edited\n")
    (root / "devices" / "amr-002.yaml").unlink()
    (root / "notes.txt").write_text("untracked\n")
    (root / "cohorts" / "new.yaml").write_text("staged\n")
    git("add", "cohorts/new.yaml", cwd=root)
    assert changed_paths(root) == [
        "cohorts/new.yaml",
        "devices/amr-001.yaml",
        "devices/amr-002.yaml",
        "notes.txt",
    ]


def test_configured_author_comes_from_git_config(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    init_repo(root)
    git("config", "user.name", "Config Person", cwd=root)
    git("config", "user.email", "config@fleet.test", cwd=root)
    assert configured_author(root) == "Config Person <config@fleet.test>"
    assert configured_author(tmp_path / "not-a-repo") is None


# --- WorkTree.prepare_commit --------------------------------------------------------------------------


def test_a_clean_tree_with_an_author_is_ready(fleet: FleetRepoBuilder) -> None:
    tree = open_work_tree(fleet.root / "rollouts")
    assert tree.root == fleet.root.resolve()
    assert "rollouts/nav-1-0-0.yaml" in tree.files
    assert tree.prepare_commit(AUTHOR) == AUTHOR


def test_a_tree_with_someone_elses_edits_is_refused_naming_them(fleet: FleetRepoBuilder) -> None:
    for index in range(1, 5):
        (fleet.root / "devices" / f"amr-00{index}.yaml").write_text(f"# edit {index}\n", encoding="utf-8")
    for extra in range(3):
        (fleet.root / f"scratch-{extra}.txt").write_text("x")
    tree = open_work_tree(fleet.root)
    with pytest.raises(SetupError) as caught:
        tree.prepare_commit(AUTHOR)
    message = str(caught.value)
    assert "uncommitted changes" in message and "--no-commit" in message
    assert "devices/amr-001.yaml" in message and "and 2 more" in message


@pytest.mark.parametrize("author", ["nobody", "Name <two words@x>", "<only@email>"], ids=repr)
def test_a_bad_author_is_refused_before_anything_is_written(fleet: FleetRepoBuilder, author: str) -> None:
    tree = open_work_tree(fleet.root)
    with pytest.raises(SetupError, match="not of the form"):
        tree.prepare_commit(author)
    assert changed_paths(fleet.root) == []


def test_without_author_or_git_identity_the_error_says_how_to_fix_it(
    fleet: FleetRepoBuilder, tmp_path: Path
) -> None:
    tree = WorkTree(tmp_path / "not-a-repo", {})
    with pytest.raises(SetupError, match=r"no user\.name/user\.email configured; set them or pass --author"):
        tree.prepare_commit(None)


# --- WorkTree.write / apply ---------------------------------------------------------------------------


def test_write_replaces_creates_and_deletes_and_prunes_empty_folders(fleet: FleetRepoBuilder) -> None:
    tree = open_work_tree(fleet.root)
    tree.write(
        {
            "rollouts/nav-1-0-0.yaml": b"changed\n",
            "approvals/nav-1-0-0/" + "A" * 40 + ".asc": b"sig",
            "configs/nav/default.yaml": None,
            "devices/absent.yaml": None,  # deleting what is not there is fine
        }
    )
    assert (fleet.root / "rollouts/nav-1-0-0.yaml").read_bytes() == b"changed\n"
    assert (fleet.root / "approvals/nav-1-0-0").is_dir()
    assert not (fleet.root / "configs").exists(), "an emptied folder is removed like git would"
    assert fleet.root.is_dir()


def test_deleting_the_last_file_never_removes_the_repository_root(tmp_path: Path) -> None:
    root = tmp_path / "solo"
    root.mkdir()
    (root / "fleet.yaml").write_text("x")
    WorkTree(root, {}).write({"fleet.yaml": None})
    assert root.is_dir()


def test_apply_is_pure_and_deletes_with_none() -> None:
    files = {"a": b"1", "b": b"2"}
    out = apply(files, {"a": None, "c": b"3", "missing": None})
    assert out == {"b": b"2", "c": b"3"}
    assert files == {"a": b"1", "b": b"2"}


# --- check_change -------------------------------------------------------------------------------------


def test_a_change_that_adds_an_error_is_refused_naming_it(fleet: FleetRepoBuilder) -> None:
    tree = open_work_tree(fleet.root)
    doc = dict(fleet.docs["rollouts/nav-1-0-0.yaml"], release="9.9.9")
    with pytest.raises(InvalidContent) as caught:
        check_change(tree, {"rollouts/nav-1-0-0.yaml": render(doc)}, "rollouts/nav-1-0-0.yaml")
    assert any(d.file == "rollouts/nav-1-0-0.yaml" and "9.9.9" in d.message for d in caught.value.diagnostics)


def test_an_error_that_was_already_there_does_not_block_an_unrelated_edit(fleet: FleetRepoBuilder) -> None:
    (fleet.root / "devices" / "broken.yaml").write_text("apiVersion: fleetcd.dev/v1\nkind: Device\n")
    tree = open_work_tree(fleet.root)
    before = [d for d in check_change(tree, {}, "rollouts/nav-1-0-0.yaml").after.errors]
    assert any(d.file == "devices/broken.yaml" for d in before)
    doc = dict(fleet.docs["rollouts/nav-1-0-0.yaml"], paused=True)
    checked = check_change(tree, {"rollouts/nav-1-0-0.yaml": render(doc)}, "rollouts/nav-1-0-0.yaml")
    assert checked.missing_approvals == ()


@pytest.fixture
def signed(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    """The standard fleet with a signed trust root, signed releases and approved rollouts (real gpg)."""
    built = FleetRepoBuilder(tmp_path / "signed", keys=keys).standard()
    built.write()
    init_repo(built.root)
    commit_all(built.root, "initial fleet", AUTHOR)
    return built


def test_missing_approvals_of_the_edited_rollout_are_reported_not_refused(signed: FleetRepoBuilder) -> None:
    tree = open_work_tree(signed.root)
    assert check_change(tree, {}, "rollouts/nav-1-0-0.yaml").missing_approvals == ()
    doc = dict(signed.docs["rollouts/nav-1-0-0.yaml"], targets={"cohorts": ["canary"]})  # voids the approvals
    checked = check_change(tree, {"rollouts/nav-1-0-0.yaml": render(doc)}, "rollouts/nav-1-0-0.yaml")
    assert checked.missing_approvals
    assert all(d.reason is Reason.APPROVAL_MISSING for d in checked.missing_approvals)
    assert all(d.file == "rollouts/nav-1-0-0.yaml" for d in checked.missing_approvals)


def test_a_pause_keeps_the_approvals_valid(signed: FleetRepoBuilder) -> None:
    tree = open_work_tree(signed.root)
    doc = dict(signed.docs["rollouts/nav-1-0-0.yaml"], paused=True)
    assert (
        check_change(
            tree, {"rollouts/nav-1-0-0.yaml": render(doc)}, "rollouts/nav-1-0-0.yaml"
        ).missing_approvals
        == ()
    )


def test_missing_approvals_of_another_rollout_are_refused(signed: FleetRepoBuilder) -> None:
    tree = open_work_tree(signed.root)
    other: dict[str, object] = {"apiVersion": "fleetcd.dev/v1", "kind": "Rollout", "name": "nav-again"}
    other.update(app="nav", release="1.0.0", targets={"cohorts": ["canary"]})
    with pytest.raises(InvalidContent) as caught:
        check_change(tree, {"rollouts/nav-again.yaml": render(other)}, "rollouts/nav-1-0-0.yaml")
    assert any(
        d.file == "rollouts/nav-again.yaml" and d.reason is Reason.APPROVAL_MISSING
        for d in caught.value.diagnostics
    )


def test_a_work_tree_with_a_symlinked_managed_file_cannot_be_opened(
    fleet: FleetRepoBuilder, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text("kind: Device\n")
    (fleet.root / "devices" / "link.yaml").symlink_to(outside)
    with pytest.raises(InvalidContent) as caught:
        open_work_tree(fleet.root)
    assert any(d.file == "devices/link.yaml" for d in caught.value.diagnostics)


# --- the commit and its message -----------------------------------------------------------------------


def test_finish_commits_exactly_the_edit_with_a_wrapped_message(fleet: FleetRepoBuilder) -> None:
    tree = open_work_tree(fleet.root)
    tree.prepare_commit(AUTHOR)
    tree.write({"rollouts/nav-1-0-0.yaml": render(dict(fleet.docs["rollouts/nav-1-0-0.yaml"], paused=True))})
    body = "Paused by the on-call operator because the canary robots in hall A reported intermittent "
    body += "lidar dropouts."
    change = finish(
        tree, "rollouts/nav-1-0-0.yaml", f"pause nav-1-0-0\n\n{body}", author=AUTHOR, notes=("paused",)
    )
    assert change.changed and change.commit is not None and change.subject == "pause nav-1-0-0"
    shown = git("show", "--name-only", "--format=%B", change.commit, cwd=fleet.root)
    assert "rollouts/nav-1-0-0.yaml" in shown.splitlines()
    assert all(len(line) <= MESSAGE_WIDTH for line in change.message.splitlines()[2:])
    assert changed_paths(fleet.root) == []


def test_finish_without_an_author_leaves_the_edit_uncommitted(fleet: FleetRepoBuilder) -> None:
    tree = open_work_tree(fleet.root)
    head = git("rev-parse", "HEAD", cwd=fleet.root)
    tree.write({"rollouts/nav-1-0-0.yaml": b"# edited\n"})
    change = finish(tree, "rollouts/nav-1-0-0.yaml", "pause nav", author=None)
    assert change.commit is None and change.changed
    assert git("rev-parse", "HEAD", cwd=fleet.root) == head
    assert changed_paths(fleet.root) == ["rollouts/nav-1-0-0.yaml"]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("subject only", "subject only"),
        ("s\n\nshort body", "s\n\nshort body"),
        ("a " * 60 + "long subject stays", "a " * 60 + "long subject stays"),
        ("s\n\n" + "word " * 30, None),
        ("s\n\npara one\n\npara two", "s\n\npara one\n\npara two"),
        ("s\n\nwell-known-hyphenated-words " * 4, None),
    ],
    ids=["subject", "short-body", "long-subject", "folded", "paragraphs", "hyphens"],
)
def test_wrap_message_folds_the_body_only(message: str, expected: str | None) -> None:
    wrapped = wrap_message(message)
    if expected is not None:
        assert wrapped == expected
    assert wrapped.split("\n", 1)[0] == message.split("\n", 1)[0]
    assert wrapped.replace("\n", " ").split() == message.replace("\n", " ").split()
    for line in wrapped.splitlines()[1:]:
        assert len(line) <= MESSAGE_WIDTH or " " not in line


def test_a_long_url_in_the_body_is_never_cut() -> None:
    url = "https://incidents.example.com/fleet/2026/05/04/" + "x" * 60
    assert url in wrap_message(f"pause nav\n\nsee {url}").splitlines()[2:][-1]
