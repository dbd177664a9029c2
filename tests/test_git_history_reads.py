"""Reading main's history (fleetcd/git/signatures.py, fleetcd/git/log.py) on real git repositories.

The controller's verify step asks which commits arrived since the last processed one, whether the
new tip still descends from it, and what each commit's signature covers; ``fleetcd history`` and
``get devices --at`` walk first parents. What must hold: merged branches bring every commit once,
parents first; a force push is seen as one (also when the old tip is gone from the clone); a
shallow clone ends a walk instead of failing it; and ids that are no commit are refused by name or
read as "nothing", never a crash.
"""

from __future__ import annotations

import os
from pathlib import Path

import pygit2
import pytest

from fleetcd.git.log import blob_at, blob_bytes, commit_subject, commit_time, first_parent_log, full_commit_id
from fleetcd.git.signatures import commit_signature, commits_between, is_descendant
from fleetcd.trust.gpg import Keyring
from tests.gitrepos import commit_files, git, work_repo
from tests.gpgkeys import KeyFactory, shared_keys


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return work_repo(tmp_path / "fleet")


def repo_of(path: Path) -> pygit2.Repository:
    return pygit2.Repository(str(path))


def head(path: Path) -> str:
    return git("rev-parse", "HEAD", cwd=path).strip()


# --- what arrived since the last processed commit ------------------------------------------------------


def test_a_merged_branch_brings_every_commit_once_parents_first(work: Path) -> None:
    base = commit_files(work, {"fleet.yaml": b"name: demo\n"})
    git("checkout", "--quiet", "-b", "feature", cwd=work)
    f1 = commit_files(work, {"devices/a.yaml": b"a\n"}, branch="feature")
    f2 = commit_files(work, {"devices/b.yaml": b"b\n"}, branch="feature")
    git("checkout", "--quiet", "main", cwd=work)
    m1 = commit_files(work, {"cohorts/c.yaml": b"c\n"})
    git("merge", "--quiet", "--no-ff", "-m", "merge feature", "feature", cwd=work)
    merge = head(work)
    arrived = commits_between(repo_of(work), base, merge)
    assert sorted(arrived) == sorted([f1, f2, m1, merge])
    assert arrived[-1] == merge
    assert arrived.index(f1) < arrived.index(f2)
    assert commits_between(repo_of(work), None, merge)[0] == base


def test_nothing_arrived_when_the_tip_did_not_move(work: Path) -> None:
    tip = commit_files(work, {"fleet.yaml": b"name: demo\n"})
    assert commits_between(repo_of(work), tip, tip) == []


def test_a_force_pushed_main_no_longer_descends_from_the_processed_tip(work: Path) -> None:
    base = commit_files(work, {"fleet.yaml": b"name: demo\n"})
    processed = commit_files(work, {"devices/a.yaml": b"a\n"})
    git("reset", "--quiet", "--hard", base, cwd=work)
    rewritten = commit_files(work, {"devices/a.yaml": b"rewritten\n"})
    repo = repo_of(work)
    assert not is_descendant(repo, rewritten, processed)
    assert is_descendant(repo, rewritten, base)
    assert is_descendant(repo, rewritten, rewritten)


def test_a_processed_tip_missing_from_a_fresh_clone_counts_as_not_an_ancestor(
    work: Path, tmp_path: Path
) -> None:
    # A controller restarted on a fresh clone after a force push never had the old tip.
    commit_files(work, {"fleet.yaml": b"name: demo\n"})
    clone = tmp_path / "clone"
    git("clone", "--quiet", str(work), str(clone))
    gone = "3" * 40
    assert not is_descendant(repo_of(clone), head(clone), gone)


@pytest.mark.parametrize("bad", ["not-hex", "", "3" * 40], ids=["not-hex", "empty", "unknown-id"])
def test_an_id_that_is_no_commit_here_is_refused_naming_it(work: Path, bad: str) -> None:
    tip = commit_files(work, {"fleet.yaml": b"name: demo\n"})
    repo = repo_of(work)
    for call in (
        lambda: commits_between(repo, None, bad),
        lambda: commits_between(repo, bad, tip),
        lambda: commit_signature(repo, bad),
        lambda: is_descendant(repo, bad, tip),
    ):
        with pytest.raises(ValueError, match="not a commit"):
            call()


def test_a_tree_or_blob_id_is_not_taken_for_a_commit(work: Path) -> None:
    commit_files(work, {"fleet.yaml": b"name: demo\n"})
    tree = git("rev-parse", "HEAD^{tree}", cwd=work).strip()
    blob = git("rev-parse", "HEAD:fleet.yaml", cwd=work).strip()
    repo = repo_of(work)
    for oid in (tree, blob):
        with pytest.raises(ValueError, match="not a commit"):
            commit_signature(repo, oid)
        assert commit_time(repo, oid) is None
        assert commit_subject(repo, oid) is None
        assert list(first_parent_log(repo, oid, 10)) == []


# --- signatures over exactly what git signed ------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(gpg_available: str) -> KeyFactory:
    return shared_keys()


def signed_commit(work: Path, keys: KeyFactory, fingerprint: str) -> str:
    (work / "fleet.yaml").write_bytes(b"name: signed\n")
    git("add", "fleet.yaml", cwd=work)
    git(
        "-c", f"user.signingkey={fingerprint}", "-c", "gpg.program=gpg",
        "commit", "--quiet", "-S", "-m", "signed change",
        cwd=work, env={**os.environ, "GNUPGHOME": str(keys.home)},
    )  # fmt: skip
    return head(work)


def test_a_signed_commits_payload_verifies_by_its_signer_and_not_once_altered(
    work: Path, keys: KeyFactory
) -> None:
    alice = keys.key("alice")
    commit_files(work, {"README.md": b"fleet\n"})
    commit = signed_commit(work, keys, alice.fingerprint)
    found = commit_signature(repo_of(work), commit)
    assert found is not None
    signature, payload = found
    assert b"gpgsig" not in payload  # the commit without its signature header: what git signed
    with keys.keyring([alice]) as ring:
        assert ring.verify_detached(payload, signature).fingerprint == alice.fingerprint
        altered = payload.replace(b"signed change", b"signed chANGE")
        assert not ring.verify_detached(altered, signature).valid


def test_an_unsigned_commit_has_no_signature(work: Path) -> None:
    tip = commit_files(work, {"fleet.yaml": b"name: demo\n"})
    assert commit_signature(repo_of(work), tip) is None


def test_a_signature_by_a_key_outside_keys_is_not_attributed(work: Path, keys: KeyFactory) -> None:
    mallory = keys.key("mallory")
    commit_files(work, {"README.md": b"fleet\n"})
    found = commit_signature(repo_of(work), signed_commit(work, keys, mallory.fingerprint))
    assert found is not None
    with Keyring.from_armored({}) as ring:
        result = ring.verify_detached(found[1], found[0])
    assert not result.valid and result.fingerprint is None


# --- first-parent walks -------------------------------------------------------------------------------------


def test_a_walk_in_a_shallow_clone_ends_at_the_cut_instead_of_failing(work: Path, tmp_path: Path) -> None:
    for n in range(5):
        commit_files(work, {"fleet.yaml": f"name: v{n}\n".encode()}, message=f"change {n}")
    clone = tmp_path / "shallow"
    git("clone", "--quiet", "--depth", "2", f"file://{work}", str(clone))
    walked = list(first_parent_log(repo_of(clone), head(clone), 100))
    assert [commit_subject(repo_of(clone), e.commit) for e in walked] == ["change 4", "change 3"]


def test_a_walk_follows_first_parents_through_a_merge(work: Path) -> None:
    commit_files(work, {"fleet.yaml": b"name: demo\n"}, message="base")
    git("checkout", "--quiet", "-b", "side", cwd=work)
    commit_files(work, {"side.yaml": b"s\n"}, message="side work", branch="side")
    git("checkout", "--quiet", "main", cwd=work)
    commit_files(work, {"main.yaml": b"m\n"}, message="main work")
    git("merge", "--quiet", "--no-ff", "-m", "merge side", "side", cwd=work)
    subjects = [
        commit_subject(repo_of(work), e.commit) for e in first_parent_log(repo_of(work), head(work), 10)
    ]
    assert subjects == ["merge side", "main work", "base"]


def test_abbreviated_ids_resolve_only_when_they_name_one_commit(work: Path) -> None:
    tip = commit_files(work, {"fleet.yaml": b"name: demo\n"})
    repo = repo_of(work)
    assert full_commit_id(repo, tip[:10]) == tip
    assert full_commit_id(repo, "main") == tip
    assert full_commit_id(repo, "0" * 12) is None
    assert full_commit_id(repo, "no-such-branch") is None
    assert full_commit_id(repo, "HEAD:fleet.yaml") is None  # a blob, not a commit


def test_blob_reads_say_nothing_for_a_directory_a_missing_path_or_a_missing_commit(work: Path) -> None:
    tip = commit_files(work, {"devices/a.yaml": b"a\n", "fleet.yaml": b"name: demo\n"})
    repo = repo_of(work)
    found = blob_at(repo, tip, "fleet.yaml")
    assert found is not None and found.size == len(b"name: demo\n")
    assert blob_bytes(repo, found.blob) == b"name: demo\n"
    assert blob_at(repo, tip, "devices") is None
    assert blob_at(repo, tip, "nothing.yaml") is None
    assert blob_at(repo, "3" * 40, "fleet.yaml") is None
    with pytest.raises(ValueError, match="not a blob"):
        blob_bytes(repo, tip)
