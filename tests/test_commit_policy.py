"""Commit policy against real git history signed by real gpg: off / head / strict, rewrites, forge merges.

Commits are signed by the git CLI itself (``git commit -S`` with the test keys' GNUPGHOME), so the
payload the policy verifies is exactly what git signed; no signature is faked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from controller.errors import HistoryRewritten
from controller.policy.commits import check_history
from fleetcd.git.signatures import RepositoryCommits, commit_signature, commits_between, is_descendant
from fleetcd.models.fleet import CommitPolicy, KeyRef
from fleetcd.reasons import Reason
from fleetcd.trust.gpg import Keyring
from tests.gitrepos import git, work_repo
from tests.gpgkeys import GpgKey, KeyFactory


@pytest.fixture(scope="module")
def keyring(keys: KeyFactory) -> Iterator[Keyring]:
    # The fleet's keys/: alice and the forge are known; mallory's key is known but never trusted.
    with keys.keyring([keys.key("alice"), keys.key("forge"), keys.key("mallory")]) as ring:
        yield ring


def commit(repo: Path, keys: KeyFactory, message: str, signer: GpgKey | None = None) -> str:
    """An empty commit on the current branch, signed by ``signer`` through git's own gpg call."""
    # Each commit changes a file: with git's clock fixed by tests.gitrepos, equal trees would mean equal ids.
    with (repo / "log.txt").open("a") as log:
        log.write(message + "\n")
    git("add", "log.txt", cwd=repo)
    git(*_sign_args(signer), "commit", "--quiet", "-m", message, cwd=repo, env={"GNUPGHOME": str(keys.home)})
    return git("rev-parse", "HEAD", cwd=repo).strip()


def _sign_args(signer: GpgKey | None) -> list[str]:
    if signer is None:
        return ["-c", "commit.gpgsign=false"]
    return [
        "-c",
        f"user.signingkey={signer.fingerprint}",
        "-c",
        "gpg.program=gpg",
        "-c",
        "commit.gpgsign=true",
    ]


def policy(mode: str, *trusted: GpgKey) -> CommitPolicy:
    return CommitPolicy.model_validate(
        {"mode": mode, "trusted": [KeyRef(fingerprint=k.fingerprint, name=k.name) for k in trusted]}
    )


def reader(repo: Path) -> RepositoryCommits:
    return RepositoryCommits(pygit2.Repository(str(repo)))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return work_repo(tmp_path / "fleet")


def test_unsigned_commit_under_strict_is_rejected_naming_the_commit(
    repo: Path, keys: KeyFactory, keyring: Keyring
) -> None:
    alice = keys.key("alice")
    base = commit(repo, keys, "base", alice)
    unsigned = commit(repo, keys, "sneaky unsigned change")
    head = commit(repo, keys, "signed on top", alice)

    verdict = check_history(reader(repo), base, head, policy("strict", alice), keyring)

    assert not verdict.ok
    assert [(c.commit, c.ok) for c in verdict.checked] == [(unsigned, False), (head, True)]
    [diagnostic] = verdict.diagnostics
    assert diagnostic.reason is Reason.SIGNATURE_MISSING
    assert diagnostic.file == unsigned
    assert unsigned in str(diagnostic) and "not signed" in str(diagnostic)


def test_signature_by_an_untrusted_key_is_rejected(repo: Path, keys: KeyFactory, keyring: Keyring) -> None:
    alice, mallory = keys.key("alice"), keys.key("mallory")
    base = commit(repo, keys, "base", alice)
    head = commit(repo, keys, "mallory's change", mallory)

    verdict = check_history(reader(repo), base, head, policy("head", alice), keyring)

    assert not verdict.ok
    [check] = verdict.checked
    assert (check.commit, check.fingerprint, check.reason) == (
        head,
        mallory.fingerprint,
        Reason.SIGNATURE_UNTRUSTED,
    )
    assert "alice" in str(verdict.diagnostics[0])


def test_signature_by_a_key_missing_from_keys_dir_is_rejected(
    repo: Path, keys: KeyFactory, keyring: Keyring
) -> None:
    alice, stranger = keys.key("alice"), keys.key("stranger")
    head = commit(repo, keys, "from a stranger", stranger)

    verdict = check_history(reader(repo), None, head, policy("head", alice, stranger), keyring)

    assert not verdict.ok
    assert verdict.checked[0].reason is Reason.SIGNATURE_UNTRUSTED  # gpg: NO_PUBKEY


def test_force_pushed_main_raises_history_rewritten(repo: Path, keys: KeyFactory, keyring: Keyring) -> None:
    alice = keys.key("alice")
    first = commit(repo, keys, "first", alice)
    processed = commit(repo, keys, "processed by the controller", alice)
    git("reset", "--quiet", "--hard", first, cwd=repo)
    rewritten = commit(repo, keys, "rewritten history", alice)

    with pytest.raises(HistoryRewritten) as caught:
        check_history(reader(repo), processed, rewritten, policy("off"), keyring)

    assert (caught.value.last_processed, caught.value.found) == (processed, rewritten)
    assert caught.value.diagnostics[0].reason is Reason.HISTORY_REWRITTEN


def test_last_processed_commit_absent_from_a_fresh_clone_counts_as_rewritten(
    repo: Path, keys: KeyFactory, keyring: Keyring
) -> None:
    head = commit(repo, keys, "only commit", keys.key("alice"))
    gone = "1" * 40

    with pytest.raises(HistoryRewritten):
        check_history(reader(repo), gone, head, policy("head", keys.key("alice")), keyring)


def test_head_mode_accepts_an_unsigned_middle_commit_when_the_tip_is_signed(
    repo: Path, keys: KeyFactory, keyring: Keyring
) -> None:
    alice = keys.key("alice")
    base = commit(repo, keys, "base", alice)
    commit(repo, keys, "unsigned middle")
    head = commit(repo, keys, "signed tip", alice)

    verdict = check_history(reader(repo), base, head, policy("head", alice), keyring)

    assert verdict.ok
    assert [(c.commit, c.fingerprint) for c in verdict.checked] == [(head, alice.fingerprint)]


def test_head_mode_rejects_an_unsigned_tip(repo: Path, keys: KeyFactory, keyring: Keyring) -> None:
    alice = keys.key("alice")
    base = commit(repo, keys, "base", alice)
    head = commit(repo, keys, "unsigned tip")

    verdict = check_history(reader(repo), base, head, policy("head", alice), keyring)

    assert not verdict.ok and verdict.diagnostics[0].file == head


def forge_merge(repo: Path, keys: KeyFactory, merger: GpgKey) -> tuple[str, str, str]:
    """main ← feature (signed by alice), merged with --no-ff and signed by ``merger``."""
    alice = keys.key("alice")
    base = commit(repo, keys, "base", alice)
    git("checkout", "--quiet", "-b", "feature", cwd=repo)
    feature = commit(repo, keys, "feature work", alice)
    git("checkout", "--quiet", "main", cwd=repo)
    git(
        *_sign_args(merger),
        "merge",
        "--quiet",
        "--no-ff",
        "-m",
        "Merge pull request #1",
        "feature",
        cwd=repo,
        env={"GNUPGHOME": str(keys.home)},
    )
    return base, feature, git("rev-parse", "HEAD", cwd=repo).strip()


def test_merge_signed_by_an_explicitly_trusted_forge_key_is_accepted(
    repo: Path, keys: KeyFactory, keyring: Keyring
) -> None:
    alice, forge = keys.key("alice"), keys.key("forge")
    base, feature, merge = forge_merge(repo, keys, forge)

    verdict = check_history(reader(repo), base, merge, policy("strict", alice, forge), keyring)

    assert verdict.ok, verdict.diagnostics
    assert [(c.commit, c.fingerprint) for c in verdict.checked] == [
        (feature, alice.fingerprint),
        (merge, forge.fingerprint),
    ]


def test_merge_by_a_forge_key_not_listed_as_trusted_is_rejected(
    repo: Path, keys: KeyFactory, keyring: Keyring
) -> None:
    alice, forge = keys.key("alice"), keys.key("forge")
    base, _feature, merge = forge_merge(repo, keys, forge)

    verdict = check_history(reader(repo), base, merge, policy("strict", alice), keyring)

    assert not verdict.ok
    assert [(d.file, d.reason) for d in verdict.diagnostics] == [(merge, Reason.SIGNATURE_UNTRUSTED)]


@pytest.mark.parametrize(
    ("mode", "signed_tip", "signed_middle", "ok"),
    [
        pytest.param("off", False, False, True, id="off-accepts-anything"),
        pytest.param("head", True, False, True, id="head-signed-tip"),
        pytest.param("head", False, True, False, id="head-unsigned-tip"),
        pytest.param("strict", True, True, True, id="strict-all-signed"),
        pytest.param("strict", True, False, False, id="strict-unsigned-middle"),
        pytest.param("strict", False, True, False, id="strict-unsigned-tip"),
    ],
)
def test_policy_decision_table(
    repo: Path, keys: KeyFactory, keyring: Keyring, mode: str, signed_tip: bool, signed_middle: bool, ok: bool
) -> None:
    alice = keys.key("alice")
    base = commit(repo, keys, "base", alice)
    commit(repo, keys, "middle", alice if signed_middle else None)
    head = commit(repo, keys, "tip", alice if signed_tip else None)

    assert check_history(reader(repo), base, head, policy(mode, alice), keyring).ok is ok


def test_tampered_commit_payload_fails_verification(repo: Path, keys: KeyFactory, keyring: Keyring) -> None:
    alice = keys.key("alice")
    head = commit(repo, keys, "signed", alice)
    signed = commit_signature(pygit2.Repository(str(repo)), head)
    assert signed is not None
    signature, payload = signed

    assert keyring.verify_detached(payload, signature).valid
    assert not keyring.verify_detached(payload.replace(b"signed", b"sIgned"), signature).valid


def test_nothing_new_since_last_processed_checks_nothing(
    repo: Path, keys: KeyFactory, keyring: Keyring
) -> None:
    head = commit(repo, keys, "unsigned but already processed")

    verdict = check_history(reader(repo), head, head, policy("strict", keys.key("alice")), keyring)

    assert verdict.ok and verdict.checked == ()


def test_strict_first_reconcile_checks_only_the_tip(repo: Path, keys: KeyFactory, keyring: Keyring) -> None:
    alice = keys.key("alice")
    commit(repo, keys, "history from before the policy")
    head = commit(repo, keys, "signed tip", alice)

    verdict = check_history(reader(repo), None, head, policy("strict", alice), keyring)

    assert verdict.ok and [c.commit for c in verdict.checked] == [head]


def test_adapter_lists_commits_oldest_first_and_answers_ancestry(repo: Path, keys: KeyFactory) -> None:
    a = commit(repo, keys, "a")
    b = commit(repo, keys, "b")
    c = commit(repo, keys, "c")
    r = pygit2.Repository(str(repo))

    assert commits_between(r, a, c) == [b, c]
    assert commits_between(r, None, c) == [a, b, c]
    assert is_descendant(r, c, a) and is_descendant(r, c, c) and not is_descendant(r, a, c)
    assert commit_signature(r, c) is None
