"""Reading a fleet repository at a git ref without a checkout (fleetcd.git.trees), on real git repositories.

``read_tree`` is what ``validate --base REF`` and the controller see of main: only managed files,
symlinks reported (never followed), and no blob loaded past the read cap however large it is.
``read_files``/``list_blobs`` read trees fleetcd wrote itself (the state branch).
"""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from fleetcd.errors import SetupError
from fleetcd.git.trees import blob_names, list_blobs, open_repository, read_files, read_tree, resolve_commit
from fleetcd.limits import READ_CAP_BYTES
from fleetcd.reasons import Reason
from tests.gitrepos import bare_repo, commit_files, git, work_repo

DEVICE = b"apiVersion: fleetcd.dev/v1\nkind: Device\n"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return work_repo(tmp_path / "fleet")


def repo_of(path: Path) -> pygit2.Repository:
    return open_repository(path)


# --- open_repository / resolve_commit ---------------------------------------------------------------


def test_open_repository_finds_the_repository_from_a_subdirectory(work: Path) -> None:
    commit_files(work, {"devices/a.yaml": DEVICE})
    repo = open_repository(work / "devices")
    assert Path(repo.workdir).resolve() == work.resolve()


def test_open_repository_opens_a_bare_repository(tmp_path: Path) -> None:
    bare = bare_repo(tmp_path / "server.git")
    assert open_repository(bare).is_bare


def test_open_repository_outside_git_names_the_path(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    if pygit2.discover_repository(str(plain)) is not None:  # tmp is inside some repository here
        pytest.skip("the temporary directory is inside a git repository")
    with pytest.raises(SetupError, match="not inside a git repository") as caught:
        open_repository(plain)
    assert str(plain) in str(caught.value)


@pytest.mark.parametrize("ref", ["main", "HEAD", "HEAD~1", "refs/heads/main", "v1"], ids=str)
def test_resolve_commit_accepts_branches_revisions_and_tags(work: Path, ref: str) -> None:
    first = commit_files(work, {"devices/a.yaml": DEVICE}, "one")
    second = commit_files(work, {"devices/b.yaml": DEVICE}, "two")
    git("tag", "-a", "v1", "-m", "annotated", cwd=work)
    expected = first if ref == "HEAD~1" else second
    assert str(resolve_commit(repo_of(work), ref).id) == expected


def test_resolve_commit_accepts_a_full_commit_id(work: Path) -> None:
    commit = commit_files(work, {"devices/a.yaml": DEVICE})
    assert str(resolve_commit(repo_of(work), commit).id) == commit


@pytest.mark.parametrize("ref", ["nope", "main~5", "0" * 40, "", "main..HEAD^^^^"], ids=repr)
def test_an_unknown_ref_is_a_setup_error_naming_it(work: Path, ref: str) -> None:
    commit_files(work, {"devices/a.yaml": DEVICE})
    with pytest.raises(SetupError, match="no such git ref") as caught:
        resolve_commit(repo_of(work), ref)
    assert f"{ref}:" in str(caught.value)


# --- read_tree -------------------------------------------------------------------------------------------


def test_read_tree_returns_every_managed_file_and_nothing_else(work: Path) -> None:
    commit_files(
        work,
        {
            "fleet.yaml": b"kind: Fleet\n",
            "devices/a.yaml": DEVICE,
            "releases/nav/1.0.0.yaml": b"kind: Release\n",
            "releases/nav/1.0.0.yaml.d/" + "A" * 40 + ".asc": b"sig",
            "keys/alice.asc": b"key",
            "configs/nav/default.yaml": b"x: 1\n",
            "docs/guide.md": b"# not managed\n",
            "src/main.py": b"print()\n",
            "README.md": b"top readme\n",
            ".github/workflows/ci.yaml": b"on: push\n",
        },
    )
    files, problems = read_tree(repo_of(work), "main")
    assert problems == []
    assert set(files) == {
        "fleet.yaml",
        "devices/a.yaml",
        "releases/nav/1.0.0.yaml",
        "releases/nav/1.0.0.yaml.d/" + "A" * 40 + ".asc",
        "keys/alice.asc",
        "configs/nav/default.yaml",
    }
    assert files["devices/a.yaml"] == DEVICE


def test_readme_files_inside_managed_directories_are_not_read(work: Path) -> None:
    commit_files(work, {"devices/README.md": b"notes", "devices/readme.txt": b"n", "devices/a.yaml": DEVICE})
    files, _ = read_tree(repo_of(work), "main")
    assert set(files) == {"devices/a.yaml"}


def test_read_tree_reads_the_ref_not_the_work_tree_or_index(work: Path) -> None:
    commit_files(work, {"devices/a.yaml": DEVICE})
    (work / "devices/a.yaml").write_bytes(b"edited but not committed\n")
    (work / "devices/new.yaml").write_bytes(b"untracked\n")
    git("add", "devices/new.yaml", cwd=work)
    files, _ = read_tree(repo_of(work), "main")
    assert files == {"devices/a.yaml": DEVICE}


def test_read_tree_of_an_older_ref_sees_the_older_files(work: Path) -> None:
    commit_files(work, {"devices/a.yaml": DEVICE}, "one")
    commit_files(work, {"devices/a.yaml": None, "devices/b.yaml": DEVICE}, "two")
    old, _ = read_tree(repo_of(work), "HEAD~1")
    new, _ = read_tree(repo_of(work), "HEAD")
    assert set(old) == {"devices/a.yaml"}
    assert set(new) == {"devices/b.yaml"}


def test_a_symlink_in_a_managed_directory_is_reported_never_followed(work: Path) -> None:
    (work / "devices").mkdir()
    (work / "devices/a.yaml").symlink_to("/etc/passwd")
    git("add", "devices/a.yaml", cwd=work)
    commit_files(work, {"devices/b.yaml": DEVICE})
    files, problems = read_tree(repo_of(work), "main")
    assert "devices/a.yaml" not in files
    assert [(p.file, p.reason) for p in problems] == [("devices/a.yaml", Reason.INVALID)]
    assert "symlink" in problems[0].message


def test_a_symlink_outside_managed_directories_is_ignored(work: Path) -> None:
    (work / "docs").mkdir()
    (work / "docs/link").symlink_to("../devices")
    git("add", "docs/link", cwd=work)
    commit_files(work, {"devices/b.yaml": DEVICE})
    _, problems = read_tree(repo_of(work), "main")
    assert problems == []


def test_a_symlinked_managed_directory_is_reported(work: Path) -> None:
    (work / "elsewhere").mkdir()
    (work / "elsewhere/a.yaml").write_bytes(DEVICE)
    (work / "devices").symlink_to("elsewhere")
    git("add", "devices", "elsewhere", cwd=work)
    commit_files(work, {"fleet.yaml": b"kind: Fleet\n"})
    files, problems = read_tree(repo_of(work), "main")
    assert [p.file for p in problems] == ["devices"]
    assert not any(path.startswith("devices/") for path in files)


def test_a_blob_over_the_read_cap_is_cut_to_the_cap_so_the_size_check_fires(work: Path) -> None:
    big = b"a: " + b"x" * (READ_CAP_BYTES + 5000) + b"\n"
    commit_files(work, {"devices/big.yaml": big, "devices/a.yaml": DEVICE})
    files, _ = read_tree(repo_of(work), "main")
    assert len(files["devices/big.yaml"]) == READ_CAP_BYTES
    assert files["devices/big.yaml"] == big[:READ_CAP_BYTES]
    assert files["devices/a.yaml"] == DEVICE


def test_a_blob_exactly_at_the_cap_is_whole(work: Path) -> None:
    exact = b"y" * READ_CAP_BYTES
    commit_files(work, {"devices/exact.yaml": exact})
    files, _ = read_tree(repo_of(work), "main")
    assert files["devices/exact.yaml"] == exact


def test_read_tree_in_a_bare_server_repository(tmp_path: Path, work: Path) -> None:
    commit_files(work, {"devices/a.yaml": DEVICE, "rollouts/r.yaml": b"kind: Rollout\n"})
    server = bare_repo(tmp_path / "server.git")
    git("push", "--quiet", str(server), "main", cwd=work)
    files, _ = read_tree(open_repository(server), "main")
    assert set(files) == {"devices/a.yaml", "rollouts/r.yaml"}


def test_an_empty_fleet_reads_as_no_files(work: Path) -> None:
    commit_files(work, {"notes.txt": b"nothing managed"})
    assert read_tree(repo_of(work), "main") == ({}, [])


# --- read_files / list_blobs (trees fleetcd wrote) -------------------------------------------------------


@pytest.fixture
def state(work: Path) -> tuple[pygit2.Repository, str]:
    commit = commit_files(
        work,
        {
            "devices/a.json": b"{}",
            "devices/b.json": b"[]",
            "deployments/r1/a.json": b"1",
            "deployments/r1/b.json": b"2",
            "deployments/r2/a.json": b"3",
            "audit/2026/05/01.jsonl": b"line\n",
            "audit/2026/05/02.jsonl": b"line2\n",
            "audit/2026/06/01.jsonl": b"line3\n",
            "top.json": b"t",
        },
    )
    return repo_of(work), commit


def test_read_files_without_prefixes_reads_every_blob(state: tuple[pygit2.Repository, str]) -> None:
    repo, commit = state
    files = read_files(repo, commit)
    assert len(files) == 9
    assert files["deployments/r2/a.json"] == b"3"
    assert files["top.json"] == b"t"


@pytest.mark.parametrize(
    ("prefixes", "expected"),
    [
        (("devices/",), {"devices/a.json", "devices/b.json"}),
        (("deployments/r1/",), {"deployments/r1/a.json", "deployments/r1/b.json"}),
        (
            ("deployments/r1/", "devices/a"),
            {"deployments/r1/a.json", "deployments/r1/b.json", "devices/a.json"},
        ),
        (("audit/2026/06/",), {"audit/2026/06/01.jsonl"}),
        (("top.json",), {"top.json"}),
        (("nothing/",), set()),
    ],
    ids=["one-dir", "nested-dir", "dir-and-file-prefix", "deep", "one-file", "absent"],
)
def test_read_files_with_prefixes_reads_only_under_them(
    state: tuple[pygit2.Repository, str], prefixes: tuple[str, ...], expected: set[str]
) -> None:
    repo, commit = state
    assert set(read_files(repo, commit, prefixes)) == expected


def test_read_files_accepts_an_oid_or_its_hex(state: tuple[pygit2.Repository, str]) -> None:
    repo, commit = state
    assert read_files(repo, commit) == read_files(repo, pygit2.Oid(hex=commit))


def test_read_files_of_a_blob_id_is_a_setup_error(state: tuple[pygit2.Repository, str]) -> None:
    repo, commit = state
    blob = git("rev-parse", f"{commit}:top.json", cwd=Path(repo.workdir)).strip()
    with pytest.raises(SetupError, match="not a commit"):
        read_files(repo, blob)
    with pytest.raises(SetupError, match="not a commit"):
        list_blobs(repo, blob, "audit/")


def test_list_blobs_gives_ids_matching_git_and_loads_no_content(state: tuple[pygit2.Repository, str]) -> None:
    repo, commit = state
    listed = list_blobs(repo, commit, "audit/")
    assert set(listed) == {"audit/2026/05/01.jsonl", "audit/2026/05/02.jsonl", "audit/2026/06/01.jsonl"}
    for path, blob_id in listed.items():
        assert git("rev-parse", f"{commit}:{path}", cwd=Path(repo.workdir)).strip() == blob_id


@pytest.mark.parametrize("directory", ["audit", "audit/", "audit//"], ids=repr)
def test_list_blobs_takes_the_directory_with_or_without_a_slash(
    state: tuple[pygit2.Repository, str], directory: str
) -> None:
    repo, commit = state
    assert len(list_blobs(repo, commit, directory)) == 3


def test_list_blobs_of_a_missing_directory_is_empty(state: tuple[pygit2.Repository, str]) -> None:
    repo, commit = state
    assert list_blobs(repo, commit, "receipts/") == {}


def test_list_blobs_of_a_path_that_is_a_file_is_empty(state: tuple[pygit2.Repository, str]) -> None:
    repo, commit = state
    assert list_blobs(repo, commit, "top.json") == {}


@pytest.mark.parametrize(
    ("directory", "expected"),
    [
        ("devices/", ["a.json", "b.json"]),
        ("deployments", []),  # only directories in it: r1/ and r2/ are not files
        ("audit/2026/05/", ["01.jsonl", "02.jsonl"]),
        ("top.json", []),  # a file, not a directory
        ("nothing/", []),
    ],
    ids=["files", "only-directories", "deep", "a-file", "absent"],
)
def test_blob_names_lists_only_the_files_directly_in_the_directory(
    state: tuple[pygit2.Repository, str], directory: str, expected: list[str]
) -> None:
    repo, commit = state
    assert blob_names(repo, commit, directory) == expected
    assert blob_names(repo, pygit2.Oid(hex=commit), directory) == expected


def test_blob_names_of_a_blob_id_is_a_setup_error(state: tuple[pygit2.Repository, str]) -> None:
    repo, commit = state
    blob = git("rev-parse", f"{commit}:top.json", cwd=Path(repo.workdir)).strip()
    with pytest.raises(SetupError, match="not a commit"):
        blob_names(repo, blob, "devices/")
