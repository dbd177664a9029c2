"""Commit-status settings the operator types (forge, API URL, repository, token), judged before any post.

The posting itself, against a real HTTP server, is in tests/test_commit_status.py. Here are the
settings that cannot work and must be refused at start-up naming the option, never the token; the
URLs each forge is sent to (a GitLab path is one URL-encoded segment, so ``../`` cannot walk the
API); the token file's edge cases; and the mirror's memory of what was posted, a cache that may be
lost or corrupt without harm.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from controller.notify.forge import (
    DESCRIPTION_CHARS,
    MAX_REPO_CHARS,
    MAX_TOKEN_BYTES,
    POSTED_FILE,
    TOKEN_ENV,
    CommitState,
    Forge,
    ForgeError,
    ForgeKind,
    Posted,
    already_posted,
    load_token,
    remember_posted,
    verdict,
)

TOKEN = "ghp_SECRETtoken123"
SHA = "0123456789abcdef0123456789abcdef01234567"
GH, GL, GT = ForgeKind.GITHUB, ForgeKind.GITLAB, ForgeKind.GITEA


# --- the API base URL and the repository --------------------------------------------------------------

ACCEPTED = [
    pytest.param(GH, "https://api.github.com", "acme/fleet", id="github"),
    pytest.param(GT, "http://gitea.lab:3000/api/v1/", "acme/fleet.repo", id="gitea-http-port-trailing-slash"),
    pytest.param(GL, "https://gitlab.example/api/v4", "group/sub/fleet", id="gitlab-nested-path"),
    pytest.param(GL, "https://gitlab.example/api/v4", "4242", id="gitlab-project-id"),
]


@pytest.mark.parametrize(("kind", "api", "repo"), ACCEPTED)
def test_settings_each_forge_takes_are_accepted(kind: ForgeKind, api: str, repo: str) -> None:
    assert Forge(kind, api, repo, TOKEN).repo == repo


REFUSED = [
    pytest.param(GH, "ftp://api.github.com", "acme/fleet", "--commit-status-api", id="not-http"),
    pytest.param(GH, "https://", "acme/fleet", "--commit-status-api", id="no-host"),
    pytest.param(GH, "api.github.com", "acme/fleet", "--commit-status-api", id="no-scheme"),
    pytest.param(GH, "https://api.github.com?x=1", "acme/fleet", "--commit-status-api", id="query"),
    pytest.param(GH, "https://api.github.com#frag", "acme/fleet", "--commit-status-api", id="fragment"),
    pytest.param(GH, "https://api.github.com", "fleet", "--commit-status-repo", id="github-no-owner"),
    pytest.param(GH, "https://api.github.com", "a/b/c", "--commit-status-repo", id="github-nested"),
    pytest.param(GT, "https://gitea.example", "4242", "--commit-status-repo", id="gitea-numeric-id"),
    pytest.param(GH, "https://api.github.com", "acme/..", "--commit-status-repo", id="dot-dot"),
    pytest.param(GL, "https://gitlab.example", "group/../admin", "--commit-status-repo", id="gitlab-dot-dot"),
    pytest.param(GL, "https://gitlab.example", "group/./p", "--commit-status-repo", id="gitlab-dot"),
    pytest.param(GH, "https://api.github.com", "acme/fleet?x", "--commit-status-repo", id="query-in-repo"),
    pytest.param(GH, "https://api.github.com", "acme/fle et", "--commit-status-repo", id="space"),
    pytest.param(GH, "https://api.github.com", "/acme/fleet", "--commit-status-repo", id="leading-slash"),
    pytest.param(GL, "https://gitlab.example", "", "--commit-status-repo", id="empty"),
    pytest.param(
        GL, "https://gitlab.example", "g/" + "p" * MAX_REPO_CHARS, "--commit-status-repo", id="too-long"
    ),
]


@pytest.mark.parametrize(("kind", "api", "repo", "option"), REFUSED)
def test_a_setting_that_cannot_work_is_refused_naming_the_option_not_the_token(
    kind: ForgeKind, api: str, repo: str, option: str
) -> None:
    with pytest.raises(ForgeError) as caught:
        Forge(kind, api, repo, TOKEN)
    assert str(caught.value).startswith(option)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    "token",
    ["", "line1\nline2", "tab\there", "x" * (MAX_TOKEN_BYTES + 1), "é" * (MAX_TOKEN_BYTES // 2 + 1)],
    ids=["empty", "newline-inside", "control-char", "too-long", "too-many-bytes"],
)
def test_a_token_that_could_not_be_sent_as_a_header_is_refused_without_echoing_it(token: str) -> None:
    with pytest.raises(ForgeError) as caught:
        Forge(GH, "https://api.github.com", "acme/fleet", token)
    assert "token" in str(caught.value)
    if token:
        assert token not in str(caught.value)


def test_a_token_at_its_byte_bound_is_accepted() -> None:
    assert Forge(GH, "https://api.github.com", "acme/fleet", "x" * MAX_TOKEN_BYTES).token


def test_the_token_never_shows_in_a_forges_repr() -> None:
    forge = Forge(GL, "https://gitlab.example/api/v4", "group/fleet", TOKEN)
    assert TOKEN not in repr(forge) and TOKEN not in str(forge)


# --- where each forge is sent, and how ------------------------------------------------------------


def test_github_and_gitea_are_sent_to_repos_owner_repo_statuses() -> None:
    assert Forge(GH, "https://api.github.com/", "acme/fleet", TOKEN).url(SHA) == (
        f"https://api.github.com/repos/acme/fleet/statuses/{SHA}"
    )
    assert Forge(GT, "https://git.lab/api/v1", "acme/fleet", TOKEN).url(SHA) == (
        f"https://git.lab/api/v1/repos/acme/fleet/statuses/{SHA}"
    )


def test_a_gitlab_path_is_one_encoded_segment_so_it_cannot_walk_the_api() -> None:
    url = Forge(GL, "https://gitlab.example/api/v4", "group/sub/fleet", TOKEN).url(SHA)
    assert url == f"https://gitlab.example/api/v4/projects/group%2Fsub%2Ffleet/statuses/{SHA}"


@pytest.mark.parametrize(
    "sha",
    ["HEAD", "0123456", SHA.upper(), SHA + "/../x", "", "g" * 40],
    ids=["ref-name", "short", "upper-case", "path-tail", "empty", "not-hex"],
)
def test_only_a_full_commit_id_makes_a_status_url(sha: str) -> None:
    with pytest.raises(ValueError, match="commit id"):
        Forge(GH, "https://api.github.com", "acme/fleet", TOKEN).url(sha)


def test_a_sha256_repository_commit_id_makes_a_status_url() -> None:
    assert Forge(GH, "https://api.github.com", "a/b", TOKEN).url("ab" * 32).endswith("ab" * 32)


@pytest.mark.parametrize(
    ("kind", "header", "value"),
    [
        (GH, "Authorization", f"Bearer {TOKEN}"),
        (GT, "Authorization", f"token {TOKEN}"),
        (GL, "PRIVATE-TOKEN", TOKEN),
    ],
    ids=["github", "gitea", "gitlab"],
)
def test_each_forge_gets_the_token_in_its_own_header(kind: ForgeKind, header: str, value: str) -> None:
    repo = "4242" if kind is GL else "acme/fleet"
    assert Forge(kind, "https://forge.example", repo, TOKEN).headers()[header] == value


@pytest.mark.parametrize(
    ("state", "github", "gitlab"),
    [
        (CommitState.PENDING, "pending", "pending"),
        (CommitState.SUCCESS, "success", "success"),
        (CommitState.FAILURE, "failure", "failed"),
        (CommitState.ERROR, "error", "failed"),
    ],
)
def test_states_are_spelled_as_each_forge_wants_and_descriptions_fit(
    state: CommitState, github: str, gitlab: str
) -> None:
    long = "rollout " + "x" * 500
    gh = json.loads(Forge(GH, "https://f.example", "a/b", TOKEN).body(state, long))
    gl = json.loads(Forge(GL, "https://f.example", "1", TOKEN).body(state, long))
    assert (gh["state"], gl["state"]) == (github, gitlab)
    assert gh["context"] == gl["name"] == "fleetcd"
    assert len(gh["description"]) == len(gl["description"]) == DESCRIPTION_CHARS


VERDICTS = [
    pytest.param(None, "boom", [("a", "halted")], CommitState.ERROR, "boom", id="a-bug-outranks-all"),
    pytest.param("bad yaml", None, [("a", "done")], CommitState.FAILURE, "bad yaml", id="stall"),
    pytest.param(
        None, None, [("b", "halted"), ("a", "progressing")], CommitState.FAILURE, "b halted", id="halt"
    ),
    pytest.param(None, None, [("a", "rolling_back")], CommitState.FAILURE, "a rolling_back", id="rollback"),
    pytest.param(None, None, [("a", "paused")], CommitState.PENDING, "a paused", id="paused-is-pending"),
    pytest.param(
        None, None, [("a", "done"), ("b", "scheduled")], CommitState.PENDING, "b scheduled", id="sched"
    ),
    pytest.param(None, None, [("a", "done")], CommitState.SUCCESS, "no rollout in progress", id="done"),
    pytest.param(None, None, [], CommitState.SUCCESS, "no rollout in progress", id="no-rollouts"),
]


@pytest.mark.parametrize(("stalled", "failed", "phases", "state", "words"), VERDICTS)
def test_the_commits_verdict_follows_the_worst_outcome(
    stalled: str | None, failed: str | None, phases: list[tuple[str, str]], state: CommitState, words: str
) -> None:
    got, description = verdict(stalled, failed, phases)
    assert got is state
    assert words in description


def test_the_verdict_lists_rollouts_in_name_order_whatever_the_input_order() -> None:
    phases = [("zeta", "progressing"), ("alpha", "paused")]
    assert verdict(None, None, phases) == verdict(None, None, list(reversed(phases)))
    assert verdict(None, None, phases)[1] == "rollout alpha paused, zeta progressing"


# --- the token file --------------------------------------------------------------------------------


def test_a_token_file_loses_one_trailing_newline_only(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_bytes(b"  abc  \r\n")
    assert load_token(file, None) == "  abc  "


def test_a_token_file_and_the_environment_together_are_refused(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_text("abc")
    with pytest.raises(ForgeError) as caught:
        load_token(file, "def")
    assert TOKEN_ENV in str(caught.value) and "abc" not in str(caught.value)


def test_an_unreadable_token_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ForgeError) as caught:
        load_token(tmp_path / "missing", None)
    assert str(tmp_path / "missing") in str(caught.value)


def test_a_token_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_bytes(b"\xff\xfe\x00secret")
    with pytest.raises(ForgeError) as caught:
        load_token(file, None)
    assert str(file) in str(caught.value) and "secret" not in str(caught.value)


def test_a_huge_token_file_is_read_only_up_to_the_bound_and_then_refused(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_bytes(b"x" * (10 * 1024 * 1024))
    token = load_token(file, None)
    assert token is not None and len(token) <= MAX_TOKEN_BYTES + 3
    with pytest.raises(ForgeError):
        Forge(GH, "https://api.github.com", "acme/fleet", token)


def test_no_token_file_and_an_empty_environment_is_no_token() -> None:
    assert load_token(None, None) is None
    assert load_token(None, "") is None
    assert load_token(None, "abc") == "abc"


def test_a_directory_given_as_token_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ForgeError):
        load_token(tmp_path, None)


# --- what was posted: a cache in the mirror -----------------------------------------------------------


def test_what_was_posted_is_remembered_and_a_change_is_posted_again(tmp_path: Path) -> None:
    first = Posted(SHA, "pending", "rollout a progressing")
    assert not already_posted(tmp_path, first)
    remember_posted(tmp_path, first)
    assert already_posted(tmp_path, first)
    assert not already_posted(tmp_path, Posted(SHA, "success", "applied; no rollout in progress"))
    assert not already_posted(tmp_path, Posted("f" * 40, "pending", "rollout a progressing"))
    assert [p.name for p in tmp_path.iterdir()] == [POSTED_FILE]  # no temp file left behind


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[]", b'{"sha": 1}', b"\xff"],
    ids=["empty", "garbage", "list", "other", "bytes"],
)
def test_a_corrupt_memory_of_what_was_posted_only_means_posting_again(tmp_path: Path, content: bytes) -> None:
    (tmp_path / POSTED_FILE).write_bytes(content)
    assert not already_posted(tmp_path, Posted(SHA, "pending", "x"))


def test_remembering_without_a_mirror_writes_nothing(tmp_path: Path) -> None:
    gone = tmp_path / "no-mirror"
    remember_posted(gone, Posted(SHA, "pending", "x"))
    assert not gone.exists()
    assert os.listdir(tmp_path) == []
