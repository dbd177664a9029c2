"""A status shard's URL may carry a password or a token; its errors must not carry them onward.

When a shard cannot be fetched, the controller writes ``status_shard_unreachable`` to the audit log
on the state branch (which robots may read) with the fetch's error, and logs a warning. The error
named the URL as given (``fetch from https://user:<password>@host/shard.git?t=<token> failed``).
Now the URL is shown without its password and query, on a real reconcile with a real shard down
and another up; what remains still names the shard, its host and the error.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from controller.reconcile.shards import StatusShard, shown_url, without_secrets
from fleetcd.git.refs import STATE_BRANCH
from tests.gitrepos import free_port, git
from tests.gpgkeys import KeyFactory
from tests.sim.world import audit_lines, make_world

PASSWORD, TOKEN = "pw-71c2e9", "tk-5d0a44"


def state_branch_bytes(server: Path) -> bytes:
    listed = git("rev-list", "--objects", STATE_BRANCH, cwd=server)
    oids = "".join(line.split(" ", 1)[0] + "\n" for line in listed.splitlines() if line)
    done = subprocess.run(
        ["git", "cat-file", "--batch"], input=oids.encode(), cwd=server, capture_output=True, check=True
    )
    return done.stdout


def test_an_unreachable_shard_s_password_and_token_reach_neither_the_audit_log_nor_the_log(
    tmp_path: Path, keys: KeyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(tmp_path, keys, name="shards")
    port = free_port()  # nothing listens there
    down = f"https://fleet:{PASSWORD}@127.0.0.1:{port}/status-north.git?t={TOKEN}"
    shards = (StatusShard("north", down), StatusShard("south", str(world.server)))
    world.settings = replace(world.settings, status_shards=shards)

    with caplog.at_level(logging.WARNING, logger="fleetcd.controller"):
        result = world.reconcile()

    assert result.stalled is None
    (line,) = [
        line["event"]
        for line in audit_lines(world.state())
        if line["event"]["kind"] == "status_shard_unreachable"
    ]
    error = str(line["data"]["error"])
    assert line["data"]["shard"] == "north"
    assert f"https://fleet@127.0.0.1:{port}/status-north.git" in error  # still says which, and where
    stored = state_branch_bytes(world.server)
    for secret in (PASSWORD, TOKEN):
        assert secret.encode() not in stored
        assert secret not in caplog.text
    assert "status shard north" in caplog.text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p4ss@git.example/x.git?t=1", "https://u@git.example/x.git"),
        ("https://git.example:8443/x.git", "https://git.example:8443/x.git"),
        ("ssh://git@[::1]:2222/fleet", "ssh://git@[::1]:2222/fleet"),
        ("git@git.example:fleet/status.git", "git@git.example:fleet/status.git"),
        ("/srv/git/status.git", "/srv/git/status.git"),
        ("https://u:p@h:99999/x", "(a URL that does not parse)"),
    ],
)
def test_a_shard_url_is_shown_without_password_or_query(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_a_password_the_error_repeats_elsewhere_is_removed_too() -> None:
    url = "https://u:s3cret-pw@h/x.git"
    text = f"fetch from {url} failed: auth for u:s3cret-pw refused"
    assert "s3cret-pw" not in without_secrets(text, url)
