"""Reading objects a hostile robot wrote (fleetcd.git.untrusted), with the objects made by the real git CLI.

Every object here is written with ``git hash-object``/``git mktree``/``git commit-tree``/``git tag``
straight into a bare repository, as a robot pushing by hand would. :func:`read_commit_file` must
name what it met (never raise anything but :class:`UnreadableCommit`), read sizes from headers
before loading, and :func:`drop_unnegotiable_refs` must delete exactly the refs libgit2's fetch
negotiation would choke on, keeping tags, symbolic refs and every ref that leads to a commit.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import ObjectType

from fleetcd.git.untrusted import (
    MAX_COMMIT_BYTES,
    MAX_TREE_BYTES,
    Unreadable,
    UnreadableCommit,
    drop_unnegotiable_refs,
    object_header,
    read_commit_file,
)
from tests.gitrepos import GIT_ENV, bare_repo, git

STATUS = "status.json"
MISSING_ID = "1234567890abcdef1234567890abcdef12345678"


class Objects:
    """A bare repository and the git plumbing a robot would use to fill it."""

    def __init__(self, path: Path) -> None:
        self.path = bare_repo(path)
        self.repo = pygit2.Repository(str(path))

    def run(self, *args: str, data: bytes = b"") -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=self.path,
            input=data,
            capture_output=True,
            env={**GIT_ENV, "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(self.path)},
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode().strip()

    def blob(self, data: bytes) -> str:
        return self.run("hash-object", "-w", "--stdin", data=data)

    def tree(self, *entries: tuple[str, str, str, str], missing: bool = False) -> str:
        """``entries`` are (mode, type, id, name) as ``git mktree`` reads them."""
        lines = "".join(f"{mode} {kind} {oid}\t{name}\n" for mode, kind, oid, name in entries)
        return self.run("mktree", *(["--missing"] if missing else []), data=lines.encode())

    def commit(self, tree: str, message: str = "status", *parents: str) -> str:
        args = ["commit-tree", tree, "-F", "-"]
        for parent in parents:
            args += ["-p", parent]
        return self.run(*args, data=message.encode())

    def file_commit(self, data: bytes, name: str = STATUS) -> str:
        return self.commit(self.tree(("100644", "blob", self.blob(data), name)))

    def ref(self, name: str, target: str) -> None:
        self.run("update-ref", name, target)

    def raw_ref(self, name: str, target: str) -> None:
        """A loose ref file written by hand: git's own update-ref refuses a missing object."""
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(target + "\n", encoding="ascii")

    def refs(self) -> set[str]:
        return set(self.run("for-each-ref", "--format=%(refname)").split())

    def read(self, target: str, name: str = STATUS, max_bytes: int = 4096) -> bytes:
        fresh = pygit2.Repository(str(self.path))  # a fresh handle: nothing cached from writing
        return read_commit_file(fresh, pygit2.Oid(hex=target), name, max_bytes=max_bytes)


@pytest.fixture
def objects(tmp_path: Path) -> Objects:
    return Objects(tmp_path / "server.git")


def refused(objects: Objects, target: str, name: str = STATUS, max_bytes: int = 4096) -> UnreadableCommit:
    with pytest.raises(UnreadableCommit) as caught:
        objects.read(target, name, max_bytes)
    return caught.value


# --- read_commit_file: the honest path ------------------------------------------------------------


def test_an_honest_status_commit_reads_back_byte_for_byte(objects: Objects) -> None:
    data = b'{"seq": 7}\n\x00\xff binary is fine here'
    assert objects.read(objects.file_commit(data)) == data


def test_an_executable_status_file_is_still_a_regular_file(objects: Objects) -> None:
    commit = objects.commit(objects.tree(("100755", "blob", objects.blob(b"{}"), STATUS)))
    assert objects.read(commit) == b"{}"


def test_the_file_is_found_among_other_entries_by_exact_name(objects: Objects) -> None:
    tree = objects.tree(
        ("100644", "blob", objects.blob(b"decoy"), "status.json.bak"),
        ("100644", "blob", objects.blob(b"real"), STATUS),
        ("100644", "blob", objects.blob(b"other"), "zzz"),
    )
    assert objects.read(objects.commit(tree)) == b"real"


def test_a_file_exactly_at_the_cap_is_read(objects: Objects) -> None:
    data = b"x" * 100
    assert objects.read(objects.file_commit(data), max_bytes=100) == data


def test_a_commit_with_a_parent_reads_its_own_tree_not_the_parents(objects: Objects) -> None:
    first = objects.file_commit(b"old")
    second = objects.commit(objects.tree(("100644", "blob", objects.blob(b"new"), STATUS)), "next", first)
    assert objects.read(second) == b"new"
    assert objects.read(first) == b"old"


# --- read_commit_file: what a hostile ref points at -----------------------------------------------


def test_a_ref_at_a_blob_is_named_as_a_blob_not_a_commit(objects: Objects) -> None:
    blob = objects.blob(b'{"seq": 1}')
    error = refused(objects, blob)
    assert error.kind is Unreadable.NOT_A_COMMIT
    assert "a blob" in error.message and blob in error.message


def test_a_ref_at_a_tree_holding_a_status_file_is_refused(objects: Objects) -> None:
    tree = objects.tree(("100644", "blob", objects.blob(b"{}"), STATUS))
    error = refused(objects, tree)
    assert error.kind is Unreadable.NOT_A_COMMIT
    assert "a tree" in error.message


def test_an_annotated_tag_of_a_good_commit_is_not_read_through(objects: Objects) -> None:
    # Nothing honest writes a tag object at a status ref; peeling it would let one robot alias
    # another robot's commit.
    good = objects.file_commit(b"{}")
    objects.run("tag", "-a", "t1", "-m", "tagged", good)
    tag = objects.run("rev-parse", "refs/tags/t1")
    assert tag != good
    error = refused(objects, tag)
    assert error.kind is Unreadable.NOT_A_COMMIT
    assert "a tag object" in error.message


def test_an_object_the_repository_lacks_is_missing_not_a_crash(objects: Objects) -> None:
    error = refused(objects, MISSING_ID)
    assert error.kind is Unreadable.MISSING
    assert MISSING_ID in error.message


def test_a_commit_without_the_file_says_no_file(objects: Objects) -> None:
    commit = objects.file_commit(b"{}", name="other.json")
    error = refused(objects, commit)
    assert error.kind is Unreadable.NO_FILE
    assert STATUS in error.message


def test_an_empty_tree_commit_says_no_file(objects: Objects) -> None:
    empty = objects.tree()
    assert refused(objects, objects.commit(empty)).kind is Unreadable.NO_FILE


def test_a_file_in_a_subdirectory_is_not_found_by_a_slash_path(objects: Objects) -> None:
    # The reader looks up one name in the top tree; "a/status.json" must not walk into subtrees.
    inner = objects.tree(("100644", "blob", objects.blob(b"{}"), STATUS))
    commit = objects.commit(objects.tree(("040000", "tree", inner, "a")))
    error = refused(objects, commit, name=f"a/{STATUS}")
    assert error.kind is Unreadable.NO_FILE


@pytest.mark.parametrize(
    ("mode", "kind", "says"),
    [
        ("120000", "blob", "a symlink"),
        ("040000", "tree", "a directory"),
        ("160000", "commit", "a submodule"),
    ],
    ids=["symlink", "directory", "gitlink"],
)
def test_a_status_entry_that_is_not_a_regular_file_is_refused(
    objects: Objects, mode: str, kind: str, says: str
) -> None:
    if kind == "blob":
        target = objects.blob(b"/etc/shadow")
    elif kind == "tree":
        target = objects.tree(("100644", "blob", objects.blob(b"{}"), STATUS))
    else:
        target = objects.file_commit(b"{}")
    commit = objects.commit(objects.tree((mode, kind, target, STATUS)))
    error = refused(objects, commit)
    assert error.kind is Unreadable.NOT_A_FILE
    assert says in error.message


def test_a_status_entry_naming_a_blob_the_mirror_lacks_is_missing(objects: Objects) -> None:
    tree = objects.tree(("100644", "blob", MISSING_ID, STATUS), missing=True)
    error = refused(objects, objects.commit(tree))
    assert error.kind is Unreadable.MISSING
    assert MISSING_ID in error.message


def test_a_status_entry_claiming_blob_but_naming_a_tree_is_missing(objects: Objects) -> None:
    # A hand-made tree can say "blob" for a tree id; the header tells the truth.
    inner = objects.tree(("100644", "blob", objects.blob(b"{}"), "x"))
    raw = b"100644 " + STATUS.encode() + b"\0" + bytes.fromhex(inner)  # git mktree would check the type
    tree = objects.run("hash-object", "-t", "tree", "--literally", "-w", "--stdin", data=raw)
    assert refused(objects, objects.commit(tree)).kind is Unreadable.MISSING


def test_a_file_one_byte_over_the_cap_is_too_large_with_both_numbers(objects: Objects) -> None:
    error = refused(objects, objects.file_commit(b"x" * 101), max_bytes=100)
    assert error.kind is Unreadable.TOO_LARGE
    assert "101" in error.message and "100" in error.message


def test_a_commit_with_a_huge_message_is_too_large_before_it_is_parsed(objects: Objects) -> None:
    tree = objects.tree(("100644", "blob", objects.blob(b"{}"), STATUS))
    commit = objects.commit(tree, "m" * (MAX_COMMIT_BYTES + 10))
    error = refused(objects, commit)
    assert error.kind is Unreadable.TOO_LARGE
    assert "the ref" in error.message


def test_a_tree_with_thousands_of_entries_is_too_large(objects: Objects) -> None:
    blob = objects.blob(b"{}")
    name_len = 60
    count = MAX_TREE_BYTES // (name_len + 28) + 50  # each entry: mode, space, name, NUL, 20-byte id
    entries = [("100644", "blob", blob, f"{i:0{name_len}d}") for i in range(count)]
    entries.append(("100644", "blob", blob, STATUS))
    commit = objects.commit(objects.tree(*entries))
    error = refused(objects, commit)
    assert error.kind is Unreadable.TOO_LARGE
    assert "tree" in error.message


def test_every_refusal_is_an_unreadable_commit_with_a_kind(objects: Objects) -> None:
    # One exception type for every hostile shape: the caller catches one thing and audits its kind.
    blob = objects.blob(b"x" * 50)
    shapes = [
        blob,
        MISSING_ID,
        objects.tree(),
        objects.file_commit(b"{}", name="nope"),
        objects.commit(objects.tree(("120000", "blob", blob, STATUS))),
        objects.file_commit(b"x" * 50),
    ]
    kinds = {refused(objects, target, max_bytes=10).kind for target in shapes}
    assert kinds == set(Unreadable)


# --- object_header ---------------------------------------------------------------------------------


def test_object_header_reports_type_and_size_without_the_content(objects: Objects) -> None:
    data = b"y" * 12345
    blob = objects.blob(data)
    assert object_header(objects.repo, pygit2.Oid(hex=blob)) == (ObjectType.BLOB, len(data))
    commit = objects.file_commit(b"{}")
    header = object_header(objects.repo, pygit2.Oid(hex=commit))
    assert header is not None and header[0] is ObjectType.COMMIT
    assert header[1] == int(objects.run("cat-file", "-s", commit))


def test_object_header_of_a_missing_object_is_none(objects: Objects) -> None:
    assert object_header(objects.repo, pygit2.Oid(hex=MISSING_ID)) is None


def test_object_header_reads_packed_objects_too(objects: Objects) -> None:
    blob = objects.blob(b"packed content")
    objects.ref("refs/heads/keep", objects.file_commit(b"{}"))
    objects.run("tag", "keep-blob", blob)
    objects.run("gc", "--quiet", "--prune=now")
    assert not (objects.path / "objects" / blob[:2] / blob[2:]).exists()
    fresh = pygit2.Repository(str(objects.path))
    assert object_header(fresh, pygit2.Oid(hex=blob)) == (ObjectType.BLOB, len(b"packed content"))


# --- drop_unnegotiable_refs ------------------------------------------------------------------------


def test_a_mirror_of_commit_refs_loses_nothing(objects: Objects) -> None:
    for name in ("refs/heads/main", "refs/fleetcd/status/r1/report", "refs/remotes/origin/main"):
        objects.ref(name, objects.file_commit(name.encode()))
    before = objects.refs()
    assert drop_unnegotiable_refs(pygit2.Repository(str(objects.path))) == {}
    assert objects.refs() == before


def test_refs_at_a_blob_a_tree_and_a_missing_object_are_dropped_with_why(objects: Objects) -> None:
    good = objects.file_commit(b"{}")
    objects.ref("refs/heads/main", good)
    objects.ref("refs/fleetcd/status/r1/report", objects.blob(b"{}"))
    objects.ref(
        "refs/fleetcd/status/r2/report", objects.tree(("100644", "blob", objects.blob(b"{}"), STATUS))
    )
    objects.raw_ref("refs/fleetcd/status/r3/report", MISSING_ID)

    dropped = drop_unnegotiable_refs(pygit2.Repository(str(objects.path)))

    assert set(dropped) == {f"refs/fleetcd/status/r{i}/report" for i in (1, 2, 3)}
    assert "a blob" in dropped["refs/fleetcd/status/r1/report"]
    assert "a tree" in dropped["refs/fleetcd/status/r2/report"]
    assert "lacks" in dropped["refs/fleetcd/status/r3/report"]
    assert objects.refs() == {"refs/heads/main"}


def test_after_the_drop_real_git_fetches_into_the_mirror_again(objects: Objects, tmp_path: Path) -> None:
    # The point of the repair: a fetch into the mirror works again (git's own negotiation here).
    server = Objects(tmp_path / "origin.git")
    server.ref("refs/heads/main", server.file_commit(b"one"))
    objects.ref("refs/fleetcd/status/r1/report", objects.blob(b"planted"))
    drop_unnegotiable_refs(pygit2.Repository(str(objects.path)))
    objects.run("fetch", "--quiet", str(server.path), "+refs/heads/*:refs/heads/*")
    assert objects.run("rev-parse", "refs/heads/main") == server.run("rev-parse", "refs/heads/main")


def test_tags_are_never_dropped_whatever_they_point_at(objects: Objects) -> None:
    blob = objects.blob(b"tagged blob")
    objects.run("tag", "light-blob", blob)
    objects.run("tag", "-a", "annotated-blob", "-m", "m", blob)
    objects.raw_ref("refs/tags/missing", MISSING_ID)
    before = objects.refs()
    assert drop_unnegotiable_refs(pygit2.Repository(str(objects.path))) == {}
    assert objects.refs() == before


def test_a_branch_at_a_tag_object_of_a_commit_is_kept_and_of_a_blob_is_dropped(objects: Objects) -> None:
    commit = objects.file_commit(b"{}")
    objects.run("tag", "-a", "of-commit", "-m", "m", commit)
    objects.run("tag", "-a", "of-blob", "-m", "m", objects.blob(b"b"))
    objects.ref("refs/fleetcd/via-commit-tag", objects.run("rev-parse", "refs/tags/of-commit"))
    objects.ref("refs/fleetcd/via-blob-tag", objects.run("rev-parse", "refs/tags/of-blob"))

    dropped = drop_unnegotiable_refs(pygit2.Repository(str(objects.path)))

    assert list(dropped) == ["refs/fleetcd/via-blob-tag"]
    assert "tag object" in dropped["refs/fleetcd/via-blob-tag"]
    assert "refs/fleetcd/via-commit-tag" in objects.refs()


def test_a_symbolic_ref_is_not_walked_or_dropped(objects: Objects) -> None:
    objects.ref("refs/heads/main", objects.file_commit(b"{}"))
    objects.run("symbolic-ref", "refs/fleetcd/alias", "refs/heads/main")
    drop_unnegotiable_refs(pygit2.Repository(str(objects.path)))
    assert objects.run("symbolic-ref", "refs/fleetcd/alias") == "refs/heads/main"


def test_dropping_twice_finds_nothing_the_second_time(objects: Objects) -> None:
    objects.ref("refs/fleetcd/status/r1/report", objects.blob(b"x"))
    repo = pygit2.Repository(str(objects.path))
    assert len(drop_unnegotiable_refs(repo)) == 1
    assert drop_unnegotiable_refs(repo) == {}


def test_a_packed_bad_ref_is_dropped_from_packed_refs(objects: Objects) -> None:
    objects.ref("refs/heads/main", objects.file_commit(b"{}"))
    objects.ref("refs/fleetcd/status/r9/report", objects.blob(b"x"))
    objects.run("pack-refs", "--all")
    assert not (objects.path / "refs/fleetcd/status/r9/report").exists()
    dropped = drop_unnegotiable_refs(pygit2.Repository(str(objects.path)))
    assert list(dropped) == ["refs/fleetcd/status/r9/report"]
    assert git("for-each-ref", "--format=%(refname)", cwd=objects.path).split() == ["refs/heads/main"]
