"""A robot polls read replicas (``remote.replicas``) and pushes its status to ``remote.status``.

Real git and gpg against bare repositories the real controller wrote: a replica is a
``git clone --mirror`` of the primary, refreshed with ``git remote update`` as a timer or a hook
would. Polls ask the replicas in order, then the primary; a replica that is down costs one failed
connection and the next one answers. A lagging replica serves older signed desired state, which
the serial rule refuses: the robot keeps what it holds. tests/test_git_servers.py runs the same
over real servers (gitolite, git daemon).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.paths import agent_paths
from agent.report.build import build_report
from agent.report.push import push_report
from agent.sync.accept import load_desired
from agent.sync.desired import fetch_desired, poll_connections, status_connection
from agent.sync.servers import FAILED_ASKED_LAST_SECONDS, FAILURES_FILE, order
from fleetcd.errors import TransportError
from fleetcd.git.refs import status_ref
from fleetcd.models.agent import MAX_REPLICAS, AgentConfig
from fleetcd.reasons import Reason
from tests.gitrepos import GIT_ENV, rev_parse
from tests.gpgkeys import KeyFactory
from tests.sim.provision import ROBOT, ProvisionedFleet, provisioned_fleet
from tests.sim.world import CANARY, STAGING, pass_wave


@pytest.fixture
def aw(tmp_path: Path, keys: KeyFactory) -> ProvisionedFleet:
    return provisioned_fleet(tmp_path, keys)


def mirror(primary: Path, path: Path) -> Path:
    """A read replica kept by git itself: ``git clone --mirror`` of the primary."""
    subprocess.run(["git", "clone", "-q", "--mirror", str(primary), str(path)], check=True, env=GIT_ENV)
    return path


def refresh(replica: Path) -> None:
    subprocess.run(["git", "-C", str(replica), "remote", "update", "--prune"], check=True, env=GIT_ENV)


def config_with(aw: ProvisionedFleet, device: str = ROBOT, **remote: Any) -> AgentConfig:
    return aw.config(device, remote=remote)


PIN_A, PIN_B = "SHA256:" + "a" * 43, "SHA256:" + "b" * 43


def replicas(*paths: Path) -> list[dict[str, str]]:
    return [{"url": str(p)} for p in paths]


# --- agent.yaml ------------------------------------------------------------------------------------


def load_remote(**remote: Any) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "apiVersion": "fleetcd.dev/v1",
            "kind": "AgentConfig",
            "device": "amr-1",
            "remote": {"url": "ssh://git@primary.example/fleet", **remote},
            "trust": {"keys_dir": "/etc/fleetcd/keys", "root": {"keys": ["A" * 40]}},
        }
    )


@pytest.mark.parametrize(
    ("remote", "field", "why"),
    [
        ({"replicas": [{"url": "ssh://git@primary.example/fleet"}]}, "replicas", "repeats remote.url"),
        ({"replicas": [{"url": "git://r/f"}, {"url": "git://r/f"}]}, "replicas", "an earlier replica"),
        ({"replicas": [{"url": "git://r/fleet", "ssh_key": "/k"}]}, "replicas.0.ssh_key", "Extra inputs"),
        ({"replicas": [{"url": "--upload-pack=evil"}]}, "replicas.0.url", "pattern"),
        ({"replicas": [{"url": "git://r/f\nx"}]}, "replicas.0.url", "pattern"),
        ({"replicas": [{"url": f"git://r{i}/f"} for i in range(MAX_REPLICAS + 1)]}, "replicas", "at most"),
        ({"replicas": "git://r/fleet"}, "replicas", "list"),
        ({"status": "ssh://git@shard/fleet"}, "status", "Endpoint"),
        ({"status": {"url": ""}}, "status.url", "at least 1"),
        ({"url": "-oProxyCommand=evil"}, "url", "pattern"),
        ({"status": {"url": "g://s", "host_key_sha256": "SHA256:x"}}, "status.host_key_sha256", "pattern"),
    ],
    ids=[
        "replica-is-primary", "replica-twice", "unknown-field", "option-url", "newline-url", "too-many",
        "not-a-list", "status-not-object", "status-empty", "primary-option-url", "bad-pin",
    ],
)  # fmt: skip
def test_a_bad_replica_or_status_endpoint_is_refused_naming_the_field(
    remote: dict[str, Any], field: str, why: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        load_remote(**remote)
    text = str(raised.value)
    assert f"remote.{field}" in text.replace("\n", " ") or field.split(".")[0] in text
    assert why.lower() in text.lower()


def test_polls_ask_every_replica_in_order_then_the_primary_and_status_goes_to_its_shard() -> None:
    config = load_remote(
        replicas=[{"url": "git://r1/fleet"}, {"url": "ssh://git@r2/fleet", "host_key_sha256": PIN_A}],
        status={"url": "ssh://git@shard-2/fleet-status", "host_key_sha256": PIN_B},
    )
    order = poll_connections(config)
    assert [c.url for c in order] == [
        "git://r1/fleet",
        "ssh://git@r2/fleet",
        "ssh://git@primary.example/fleet",
    ]
    assert order[1].host_keys is not None and order[1].host_keys.pinned_sha256 == (PIN_A,)
    assert order[0].host_keys is None  # each server its own pin; none given: known_hosts
    status = status_connection(config)
    assert status.url == "ssh://git@shard-2/fleet-status"
    assert status.host_keys is not None and status.host_keys.pinned_sha256 == (PIN_B,)
    assert status_connection(load_remote()).url == "ssh://git@primary.example/fleet"


# --- polling --------------------------------------------------------------------------------------


def test_a_robot_polling_a_replica_gets_the_desired_state_the_controller_wrote_to_the_primary(
    aw: ProvisionedFleet,
) -> None:
    replica = mirror(aw.server, aw.root / "replica.git")
    config = config_with(aw, url=str(aw.root / "primary-is-gone.git"), replicas=replicas(replica))
    files = fetch_desired(config, aw.repo_dir())  # the primary path does not exist: the replica served it
    assert files is not None
    assert files.bundle == aw.server_files()["bundle.json"]


def test_a_replica_that_is_down_falls_through_to_the_next_then_to_the_primary(aw: ProvisionedFleet) -> None:
    good = mirror(aw.server, aw.root / "replica-2.git")
    down = aw.root / "replica-1-down.git"
    config = config_with(aw, replicas=replicas(down, good))
    expected = aw.server_files()["bundle.json"]
    aw.server.rename(aw.root / "primary-away.git")
    try:
        files = fetch_desired(config, aw.repo_dir())  # replica 1 down, replica 2 answers
        assert files is not None and files.bundle == expected
    finally:
        (aw.root / "primary-away.git").rename(aw.server)
    everything_down = config_with(aw, replicas=replicas(down, aw.root / "also-down.git"))
    files = fetch_desired(everything_down, aw.repo_dir())  # both replicas down: the primary answers
    assert files is not None and files.bundle == aw.server_files()["bundle.json"]


def test_when_no_server_answers_the_poll_fails_naming_every_one(aw: ProvisionedFleet) -> None:
    r1, r2, primary = (aw.root / name for name in ("r1.git", "r2.git", "primary.git"))
    config = config_with(aw, url=str(primary), replicas=replicas(r1, r2))
    with pytest.raises(TransportError, match=r"no server answered the poll \(3 tried\)") as raised:
        fetch_desired(config, aw.repo_dir())
    assert all(str(p) in str(raised.value) for p in (r1, r2, primary))


def test_a_lagging_replica_cannot_roll_a_robot_back_and_a_fresh_one_moves_it_on(aw: ProvisionedFleet) -> None:
    robot = CANARY[0]
    replica = mirror(aw.server, aw.root / "replica.git")  # holds the first root: nothing for can-1 yet
    pass_wave(aw.world, STAGING, "staging")  # the canary wave starts: can-1 gets nav, a newer serial
    config = config_with(aw, robot, replicas=replicas(replica))
    paths = agent_paths(config).create()

    down = config_with(aw, robot, replicas=replicas(aw.root / "replica-down.git"))
    fresh = load_desired(down, paths, aw.world.clock.now)  # replica down: the primary's newer serial
    assert fresh.known and "nav" in fresh.assignments
    held = fresh.serial
    assert held is not None

    lagging = load_desired(config, paths, aw.world.clock.now)  # the replica is back, one root behind
    assert lagging.serial == held and "nav" in lagging.assignments  # keeps what it holds
    assert [getattr(e, "reason", None) for e in lagging.errors] == [Reason.SERIAL_ROLLBACK]

    refresh(replica)  # the replica caught up: the same serial, no complaint
    caught_up = load_desired(config, paths, aw.world.clock.now)
    assert caught_up.serial == held and not caught_up.errors


# --- status --------------------------------------------------------------------------------------


def test_a_report_goes_to_the_status_endpoint_never_to_a_replica_or_the_primary(aw: ProvisionedFleet) -> None:
    shard = aw.root / "status-shard.git"
    subprocess.run(["git", "init", "-q", "--bare", str(shard)], check=True, env=GIT_ENV)
    replica = mirror(aw.server, aw.root / "replica.git")
    config = config_with(aw, replicas=replicas(replica), status={"url": str(shard)})
    report = build_report(
        ROBOT, 1, aw.world.clock.now, bundle_serial=1, stale=False, apps=[], deployments=[],
        last_error=None, drift=[],
    )  # fmt: skip
    pushed = push_report(config, aw.repo_dir(), report)
    assert rev_parse(shard, status_ref(ROBOT)) == pushed
    assert rev_parse(aw.server, status_ref(ROBOT)) is None
    assert rev_parse(replica, status_ref(ROBOT)) is None


def test_a_status_shard_that_is_down_is_a_transport_error_and_nothing_is_sent_elsewhere(
    aw: ProvisionedFleet,
) -> None:
    config = config_with(aw, status={"url": str(aw.root / "shard-down.git")})
    report = build_report(
        ROBOT, 1, aw.world.clock.now, bundle_serial=1, stale=False, apps=[], deployments=[],
        last_error=None, drift=[],
    )  # fmt: skip
    with pytest.raises(TransportError, match=r"shard-down\.git"):
        push_report(config, aw.repo_dir(), report)
    assert rev_parse(aw.server, status_ref(ROBOT)) is None


def test_a_whole_agent_cycle_polls_the_replica_and_reports_to_its_shard(aw: ProvisionedFleet) -> None:
    from agent.loop import run_once

    robot = CANARY[0]  # nothing to install yet: the cycle is sync, verify, report
    replica = mirror(aw.server, aw.root / "replica.git")
    shard = aw.root / "status-shard.git"
    subprocess.run(["git", "init", "-q", "--bare", str(shard)], check=True, env=GIT_ENV)
    config = config_with(
        aw, robot, url=str(aw.root / "primary-unreachable.git"), replicas=replicas(replica),
        status={"url": str(shard)},
    )  # fmt: skip
    result = run_once(config, aw.world.clock.now)
    assert result.errors == [] and result.pushed
    assert result.serial is not None  # verified what the replica served
    assert rev_parse(shard, status_ref(robot)) is not None
    assert rev_parse(aw.server, status_ref(robot)) is None and rev_parse(replica, status_ref(robot)) is None


# --- a server that failed is asked last for a while ------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "now", "expected"),
    [
        ({}, 1000.0, ["r1", "r2", "primary"]),
        ({"r1": 900.0}, 1000.0, ["r2", "primary", "r1"]),
        ({"r1": 900.0, "primary": 950.0}, 1000.0, ["r2", "r1", "primary"]),
        ({"r1": 1000.0 - FAILED_ASKED_LAST_SECONDS}, 1000.0, ["r1", "r2", "primary"]),
        ({"r1": 5000.0}, 1000.0, ["r2", "primary", "r1"]),
        ({"r1": 900.0, "r2": 900.0, "primary": 900.0}, 1000.0, ["r1", "r2", "primary"]),
    ],
    ids=["none", "recent", "two-recent-keep-order", "expired", "clock-stepped-back", "all-failed"],
)
def test_a_server_that_failed_recently_is_asked_last(
    failures: dict[str, float], now: float, expected: list[str]
) -> None:
    servers = ["r1", "r2", "primary"]
    assert order(servers, servers, failures, now) == expected


def test_a_dead_replica_costs_one_poll_then_is_asked_last_until_its_time_is_up(
    aw: ProvisionedFleet, caplog: pytest.LogCaptureFixture
) -> None:
    dead = aw.root / "replica-dead.git"
    good = mirror(aw.server, aw.root / "replica-good.git")
    config = config_with(aw, replicas=replicas(dead, good))
    repo_dir = aw.repo_dir()

    def warned() -> bool:
        found = any("asking" in r.getMessage() for r in caplog.records)
        caplog.clear()
        return found

    with caplog.at_level("WARNING"):
        assert fetch_desired(config, repo_dir) is not None
        assert warned()  # the dead one was asked first, then the good one
        kept = json.loads((repo_dir / FAILURES_FILE).read_text())
        assert list(kept) == [str(dead)]
        assert fetch_desired(config, repo_dir) is not None
        assert not warned()  # the good one first: no failed connection this time

        (repo_dir / FAILURES_FILE).write_text(
            json.dumps({str(dead): time.time() - FAILED_ASKED_LAST_SECONDS - 1})
        )
        assert fetch_desired(config, repo_dir) is not None
        assert warned()  # its time is up: asked first again (and failed again)

        mirror(aw.server, dead)  # the replica is back
        (repo_dir / FAILURES_FILE).write_text(
            json.dumps({str(dead): time.time() - FAILED_ASKED_LAST_SECONDS - 1})
        )
        assert fetch_desired(config, repo_dir) is not None
        assert not warned()  # back: it answers, and is forgotten as failed
        assert json.loads((repo_dir / FAILURES_FILE).read_text()) == {}


@pytest.mark.parametrize(
    "junk", [b"not json", b"[1, 2]", b'{"x": "y"}', b"{" * 70_000], ids=["text", "list", "other", "huge"]
)
def test_an_unreadable_failures_file_only_costs_the_order(aw: ProvisionedFleet, junk: bytes) -> None:
    good = mirror(aw.server, aw.root / "replica-good.git")
    config = config_with(aw, replicas=replicas(aw.root / "dead.git", good))
    repo_dir = aw.repo_dir()
    repo_dir.mkdir(parents=True)
    (repo_dir / FAILURES_FILE).write_bytes(junk)
    assert fetch_desired(config, repo_dir) is not None
    assert list(json.loads((repo_dir / FAILURES_FILE).read_text())) == [str(aw.root / "dead.git")]
