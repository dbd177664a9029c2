"""Robots reporting to status shards in a rehearsal (``SimSettings.status_shards``).

``bench/e2e_rollout.py`` spreads the robots' status pushes over shard repositories, as a fleet
past one server does (docs/git-server.md, "Status shards"), so that a push lands in a repository
of a fifth of the fleet. That must change nothing the rehearsal reports — the same robots apply at
the same simulated instants, the controller records the same outcomes from the shards it reads —
only where each report lands: in its robot's own shard (:func:`fleetcd.shards.shard_of`), never
in the fleet repository nor in another shard.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.sim import SimReport, SimSettings, SimShard
from fleetcd.shards import shard_of
from tests.gitrepos import bare_repo
from tests.gpgkeys import KeyFactory
from tests.test_sim import ROBOTS, record_outcomes, rehearse, state_of, waves_fleet

SHARDS = ("s1", "s2", "s3")


def status_refs(repo: Path) -> set[str]:
    listed = subprocess.run(
        ["git", "--git-dir", str(repo), "for-each-ref", "--format=%(refname)", "refs/fleetcd/status/"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(listed.stdout.split())


def rehearsal(
    root: Path, keys: KeyFactory, shards: dict[str, Path], **overrides: Any
) -> tuple[SimReport, Path]:
    server = waves_fleet(root, keys)
    listed = tuple(SimShard(name, str(path)) for name, path in shards.items())
    return rehearse(server, keys, root / "sim", status_shards=listed, **overrides), server


def test_reporting_to_status_shards_changes_no_outcome_and_no_instant_only_where_reports_land(
    tmp_path: Path, keys: KeyFactory
) -> None:
    shards = {name: bare_repo(tmp_path / "shards" / f"{name}.git") for name in SHARDS}
    plain, plain_server = rehearsal(tmp_path / "plain", keys, {}, failure_rate=0.2, offline_rate=0.1)
    sharded, sharded_server = rehearsal(
        tmp_path / "sharded", keys, shards, failure_rate=0.2, offline_rate=0.1
    )

    assert plain.stopped == sharded.stopped == "done"
    assert plain.summary == sharded.summary
    assert plain.waves == sharded.waves
    assert [(t.device, t.deployment_id, t.outcome, t.finished_s) for t in plain.traces] == [
        (t.device, t.deployment_id, t.outcome, t.finished_s) for t in sharded.traces
    ]
    assert record_outcomes(state_of(plain_server, tmp_path / "a")) == record_outcomes(
        state_of(sharded_server, tmp_path / "b")
    )
    assert plain.costs["pushes"] == sharded.costs["pushes"]
    assert plain.costs["polls"] == sharded.costs["polls"]
    # Every report went to its robot's own shard, none to the fleet repository nor to another shard;
    # together the shards hold the reports the fleet repository held without them.
    assert status_refs(sharded_server) == set()
    held = set()
    for name, repo in shards.items():
        refs = status_refs(repo)
        assert refs and all(shard_of(ref.split("/")[3], SHARDS) == name for ref in refs), name
        held |= refs
    assert held == status_refs(plain_server) and len(held) >= plain.summary.applied
    assert sharded.settings["status_shards"] == {name: str(path) for name, path in shards.items()}


def test_a_robot_pushes_to_its_shards_push_url_when_one_is_given(tmp_path: Path, keys: KeyFactory) -> None:
    """The controller reads a shard at ``url``; robots push at ``push_url`` (here another path to
    the same repository, as the bench's ``git://`` daemon is)."""
    real = bare_repo(tmp_path / "shards" / "one.git")
    (tmp_path / "elsewhere").mkdir()
    alias = tmp_path / "elsewhere" / "one.git"
    alias.symlink_to(real)
    server = waves_fleet(tmp_path, keys)

    report = rehearse(
        server, keys, tmp_path / "sim", status_shards=(SimShard("only", str(real), str(alias)),)
    )

    assert report.stopped == "done" and report.summary.applied == len(ROBOTS)
    assert len(status_refs(real)) == len(ROBOTS) and status_refs(server) == set()
    assert report.settings["status_shards"] == {"only": str(alias)}


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        ((SimShard("S1", "/a"),), "lower-case letters"),
        ((SimShard("s1", "/a"), SimShard("s1", "/b")), "given twice"),
        ((SimShard("s1", "/a"), SimShard("s2", "/a")), "given twice"),
    ],
    ids=["bad-name", "name-twice", "url-twice"],
)
def test_settings_refuse_status_shards_the_controller_would_refuse(
    tmp_path: Path, shards: tuple[SimShard, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SimSettings(url="x", gnupghome=tmp_path, workdir=tmp_path, status_shards=shards)
