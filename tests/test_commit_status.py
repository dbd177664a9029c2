"""Commit statuses posted by the real reconcile to a real local HTTP server standing in for the
GitHub, GitLab and Gitea commit-status APIs: each forge's URL shape and token header, the state
for main's head (pending while a rollout runs, failure when main stalls), no repeat of a status the
forge already has, and a forge that is down neither stops the reconcile nor loses the status.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from controller.cli import build
from controller.notify.forge import CommitState, Forge, ForgeError, ForgeKind, verdict
from controller.reconcile.due import FULL_RECONCILE_EVERY
from controller.reconcile.steps import reconcile_once
from fleetcd.cli.exitcodes import Exit
from fleetcd.cli.main import run
from tests.gpgkeys import KeyFactory
from tests.hookreceiver import HookReceiver
from tests.sim.world import STAGING, ControllerWorld, make_world

TOKEN = "ghp_not-a-real-token-0123456789"  # a test value


def with_forge(world: ControllerWorld, forge: Forge) -> ControllerWorld:
    world.settings = replace(world.settings, commit_status=forge)
    return world


@pytest.mark.parametrize(
    ("kind", "api", "repo", "path", "auth", "state_field"),
    [
        pytest.param(
            ForgeKind.GITHUB,
            "",
            "acme/fleet",
            "/repos/acme/fleet/statuses/{sha}",
            ("Authorization", f"Bearer {TOKEN}"),
            ("context", "pending"),
            id="github",
        ),
        pytest.param(
            ForgeKind.GITEA,
            "/api/v1",
            "acme/fleet",
            "/api/v1/repos/acme/fleet/statuses/{sha}",
            ("Authorization", f"token {TOKEN}"),
            ("context", "pending"),
            id="gitea",
        ),
        pytest.param(
            ForgeKind.GITLAB,
            "/api/v4",
            "robots/acme/fleet",
            "/api/v4/projects/robots%2Facme%2Ffleet/statuses/{sha}",
            ("PRIVATE-TOKEN", TOKEN),
            ("name", "pending"),
            id="gitlab",
        ),
    ],
)
def test_each_forge_gets_main_s_status_at_its_url_with_its_token_header(
    tmp_path: Path,
    keys: KeyFactory,
    receiver: HookReceiver,
    kind: ForgeKind,
    api: str,
    repo: str,
    path: str,
    auth: tuple[str, str],
    state_field: tuple[str, str],
) -> None:
    world = with_forge(make_world(tmp_path, keys), Forge(kind, receiver.url(api), repo, TOKEN))

    result = world.reconcile()

    [seen] = receiver.seen
    assert seen.path == path.format(sha=result.main)
    assert seen.headers[auth[0]] == auth[1]
    body = json.loads(seen.body)
    name, state = state_field
    assert (body[name], body["state"]) == ("fleetcd", state)  # the staging wave is progressing
    assert "nav progressing" in body["description"]


def test_the_same_status_is_not_posted_twice_and_a_new_one_is(
    tmp_path: Path, keys: KeyFactory, receiver: HookReceiver
) -> None:
    world = with_forge(
        make_world(tmp_path, keys), Forge(ForgeKind.GITHUB, receiver.url(""), "acme/fleet", TOKEN)
    )
    world.reconcile()
    world.clock.tick(5)
    world.report_all(STAGING, "downloading")  # a write that changes nothing the forge sees
    world.reconcile()
    assert len(receiver.seen) == 1

    world.fleet.file("cohorts/broken.yaml", "apiVersion: fleetcd.dev/v1\nkind: Cohort\nname: [\n")
    world.merge("a cohort that does not parse")
    world.clock.tick(5)
    stalled = reconcile_once(world.settings)

    assert stalled.stalled is not None
    first, second = receiver.seen
    assert second.path == f"/repos/acme/fleet/statuses/{stalled.main}" != first.path
    body = json.loads(second.body)
    assert body["state"] == "failure" and "cohorts/broken.yaml" in body["description"]
    assert len(body["description"]) <= 140


def test_a_forge_that_is_down_does_not_stop_the_reconcile_and_gets_the_status_later(
    tmp_path: Path, keys: KeyFactory, receiver: HookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.reply(500, 500, 500, 500)  # every attempt of the first reconcile
    world = with_forge(
        make_world(tmp_path, keys), Forge(ForgeKind.GITEA, receiver.url(""), "acme/fleet", TOKEN)
    )

    with caplog.at_level(logging.WARNING, logger="fleetcd.controller"):
        first = world.reconcile()

    assert first.state_commit is not None and first.desired_refs > 0  # applied and pushed all the same
    assert len(receiver.seen) == 4
    assert "not posted" in caplog.text and "HTTP 500" in caplog.text and TOKEN not in caplog.text

    world.clock.tick(5)
    assert world.reconcile().idle and len(receiver.seen) == 4  # the idle fast path posts nothing
    world.clock.tick(FULL_RECONCILE_EVERY.total_seconds())
    assert not world.reconcile().idle  # the periodic full reconcile, with nothing new to write

    assert len(receiver.seen) == 5
    assert json.loads(receiver.seen[-1].body)["state"] == "pending"


@pytest.mark.parametrize(
    ("stalled", "failed", "phases", "state", "words"),
    [
        pytest.param(
            None, None, [("nav", "progressing")], CommitState.PENDING, "nav progressing", id="running"
        ),
        pytest.param(
            None, None, [("nav", "scheduled")], CommitState.PENDING, "nav scheduled", id="scheduled"
        ),
        pytest.param(None, None, [("nav", "paused")], CommitState.PENDING, "nav paused", id="paused"),
        pytest.param(None, None, [("nav", "completed")], CommitState.SUCCESS, "applied", id="done"),
        pytest.param(None, None, [], CommitState.SUCCESS, "applied", id="no-rollouts"),
        pytest.param(
            None,
            None,
            [("a", "progressing"), ("nav", "halted")],
            CommitState.FAILURE,
            "nav halted",
            id="halted",
        ),
        pytest.param(
            None, None, [("nav", "rolling_back")], CommitState.FAILURE, "rolling_back", id="rollback"
        ),
        pytest.param("bad.yaml: x", None, [], CommitState.FAILURE, "stalled: bad.yaml", id="stalled-main"),
        pytest.param(None, "KeyError", [], CommitState.ERROR, "controller error", id="bug"),
    ],
)
def test_verdict_table(
    stalled: str | None, failed: str | None, phases: list[tuple[str, str]], state: CommitState, words: str
) -> None:
    got, description = verdict(stalled, failed, phases)
    assert got is state and words in description


def test_gitlab_names_failure_and_error_failed() -> None:
    forge = Forge(ForgeKind.GITLAB, "https://gitlab.test/api/v4", "42", TOKEN)
    assert json.loads(forge.body(CommitState.ERROR, "x"))["state"] == "failed"
    assert json.loads(forge.body(CommitState.FAILURE, "x"))["state"] == "failed"
    assert forge.url("a" * 40) == "https://gitlab.test/api/v4/projects/42/statuses/" + "a" * 40


@pytest.mark.parametrize(
    ("kind", "api", "repo", "message"),
    [
        pytest.param(ForgeKind.GITHUB, "ftp://x", "a/b", "--commit-status-api", id="scheme"),
        pytest.param(ForgeKind.GITHUB, "https://x/?q=1", "a/b", "--commit-status-api", id="query"),
        pytest.param(ForgeKind.GITHUB, "https://x", "a/b/c", "OWNER/REPO", id="github-nested"),
        pytest.param(ForgeKind.GITEA, "https://x", "../b", "OWNER/REPO", id="gitea-traversal-chars"),
        pytest.param(ForgeKind.GITLAB, "https://x", "g/p?x", "project id", id="gitlab-query-in-path"),
        pytest.param(ForgeKind.GITHUB, "https://x", "a/" + "b" * 300, "OWNER/REPO", id="too-long"),
    ],
)
def test_a_forge_setting_that_cannot_work_is_refused_naming_the_option(
    kind: ForgeKind, api: str, repo: str, message: str
) -> None:
    with pytest.raises(ForgeError, match=message) as refused:
        Forge(kind, api, repo, TOKEN)
    assert TOKEN not in str(refused.value)


def test_the_token_never_shows_in_a_repr() -> None:
    assert TOKEN not in repr(Forge(ForgeKind.GITHUB, "https://api.github.com", "a/b", TOKEN))


def test_the_cli_refuses_a_partial_commit_status_setup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEETCD_COMMIT_STATUS_TOKEN", raising=False)
    argv = ["controller", "reconcile", "--once", "--repo", str(tmp_path / "none.git")]
    argv += ["--gnupghome", str(tmp_path), "--commit-status-forge", "github", "--commit-status-repo", "a/b"]

    assert run(build(), argv) == int(Exit.USAGE)

    err = capsys.readouterr().err
    assert "--commit-status-api" in err and "FLEETCD_COMMIT_STATUS_TOKEN" in err


def test_the_cli_posts_with_the_token_from_the_environment(
    tmp_path: Path, keys: KeyFactory, receiver: HookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world(tmp_path, keys)
    monkeypatch.setenv("FLEETCD_COMMIT_STATUS_TOKEN", TOKEN)
    argv = ["controller", "reconcile", "--once", "--repo", str(world.server), "--cache", str(tmp_path / "c")]
    argv += ["--gnupghome", str(keys.home), "--commit-status-forge", "github"]
    argv += ["--commit-status-api", receiver.url(""), "--commit-status-repo", "acme/fleet"]

    assert run(build(), argv) == int(Exit.OK)

    [seen] = receiver.seen
    assert seen.path.startswith("/repos/acme/fleet/statuses/")
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
