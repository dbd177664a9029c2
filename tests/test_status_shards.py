"""Status shards: robots push their reports to several repositories, one controller reads them all.

Real git (bare repositories by path), real gpg, the real controller and the agent's real push.
Each robot pushes to the shard :func:`fleetcd.shards.shard_of` gives it (``remote.status`` in its
agent.yaml); the controller fetches every shard, ingests each robot's report from its own shard
only, keeps ingesting when a shard is down (an audit line says which) and refuses a report found in
another shard. tests/test_git_servers.py runs the same over two gitolite servers.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.report.build import build_report
from agent.report.push import push_report
from controller.audit.events import AuditKind
from controller.reconcile.cache import ReconcileCache
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.shards import StatusShard
from controller.reconcile.steps import reconcile_once
from controller.state.model import DeviceFile
from fleetcd.git.refs import status_ref
from fleetcd.reports import DeploymentReport
from fleetcd.shards import ShardSpec, check_shards, parse_shard, shard_of
from tests.gitrepos import bare_repo, rev_parse
from tests.gpgkeys import KeyFactory, shared_keys
from tests.sim.provision import ProvisionedFleet, provisioned_fleet
from tests.sim.world import CANARY, PRODUCTION, STAGING, audit_lines

ROBOTS = STAGING + CANARY + PRODUCTION
NAMES = ["north", "south"]


# --- the rule (pure) --------------------------------------------------------------------------------


def test_every_robot_has_exactly_one_shard_whatever_order_the_shards_are_listed_in() -> None:
    robots = [f"amr-{i:04d}" for i in range(2000)]
    names = ["eu-1", "us-1", "ap-1"]
    first = {r: shard_of(r, names) for r in robots}
    assert first == {r: shard_of(r, list(reversed(names))) for r in robots}
    counts = {name: sum(1 for s in first.values() if s == name) for name in names}
    assert all(500 < count < 840 for count in counts.values()), counts  # spread, about a third each


def test_adding_a_shard_moves_only_the_robots_it_takes_and_removing_one_moves_only_its_own() -> None:
    robots = [f"amr-{i:04d}" for i in range(3000)]
    before = {r: shard_of(r, ["eu-1", "us-1"]) for r in robots}
    after = {r: shard_of(r, ["eu-1", "us-1", "ap-1"]) for r in robots}
    moved = [r for r in robots if before[r] != after[r]]
    assert all(after[r] == "ap-1" for r in moved)
    assert 800 < len(moved) < 1200  # about a third, not a reshuffle
    back = {r: shard_of(r, ["eu-1", "us-1"]) for r in robots}
    assert back == before


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("north", "expected NAME=URL"),
        ("north=", "expected NAME=URL"),
        ("North=/srv/s.git", "lower-case"),
        ("no_rth=/srv/s.git", "lower-case"),
        ("-x=/srv/s.git", "lower-case"),
        ("n" * 33 + "=/srv/s.git", "at most 32"),
        ("north=" + "/x" * 1100, "at most 2048"),
    ],
    ids=["no-url", "empty-url", "upper-case", "underscore", "leading-dash", "long-name", "long-url"],
)
def test_a_malformed_status_shard_is_refused_saying_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_shard(text)


def test_a_shard_name_or_url_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="name 'a' is given twice"):
        check_shards([ShardSpec("a", "/x"), ShardSpec("a", "/y")])
    with pytest.raises(ValueError, match="url '/x' is given twice"):
        check_shards([ShardSpec("a", "/x"), ShardSpec("b", "/x")])
    assert [s.name for s in check_shards([ShardSpec("b", "/y"), ShardSpec("a", "/x")])] == ["a", "b"]


# --- the controller reading two shards --------------------------------------------------------------


@dataclass
class Sharded:
    aw: ProvisionedFleet
    shards: dict[str, Path]
    seq: dict[str, int]

    @property
    def settings(self) -> ControllerSettings:
        return self.aw.world.settings

    def owner(self, device: str) -> str:
        return shard_of(device, NAMES)

    def report(
        self, device: str, *, into: str | None = None, deployments: list[DeploymentReport] | None = None
    ) -> str:
        """``device``'s next report pushed by the agent's own push to shard ``into`` (default: its own)."""
        self.seq[device] = self.seq.get(device, 0) + 1
        shard = self.shards[into or self.owner(device)]
        config = self.aw.config(device, remote={"status": {"url": str(shard)}})
        now = self.aw.world.clock.now
        report = build_report(
            device, self.seq[device], now, bundle_serial=1, stale=False, apps=[],
            deployments=deployments or [], last_error=None, drift=[],
        )  # fmt: skip
        repo_dir = self.aw.root / f"robot-{device}-{into or 'own'}.git"
        return push_report(config, repo_dir, report)

    def reconcile(self) -> Any:
        self.aw.world.clock.tick(5)
        result = reconcile_once(self.settings)
        assert result.stalled is None, result.stalled
        return result

    def devices(self) -> dict[str, DeviceFile]:
        return self.aw.world.state().devices


@pytest.fixture
def sharded(tmp_path: Path, gpg_available: str) -> Iterator[Sharded]:
    keys: KeyFactory = shared_keys()
    aw = provisioned_fleet(tmp_path / "fleet", keys)
    shards = {name: bare_repo(tmp_path / f"status-{name}.git") for name in NAMES}
    aw.world.settings = replace(
        aw.world.settings, status_shards=tuple(StatusShard(n, str(p)) for n, p in shards.items())
    )
    yield Sharded(aw, shards, {})


def test_the_scenario_robots_fall_in_both_shards() -> None:
    assert {shard_of(robot, NAMES) for robot in ROBOTS} == set(NAMES)


def test_reports_pushed_to_two_shards_are_ingested_by_one_reconcile(sharded: Sharded) -> None:
    robot = STAGING[0]
    deployment = sharded.aw.world.sim.bundle(robot, sharded.aw.world.clock.now).deployments[0]
    claim = DeploymentReport(
        deployment_id=deployment.deployment_id, app="nav", version=deployment.version,
        activity="deployed", error="none", message="", updated_at=sharded.aw.world.clock.now,
    )  # fmt: skip
    for device in ROBOTS:
        sharded.report(device, deployments=[claim] if device == robot else None)
    for device in ROBOTS:  # each report sits in its own shard only
        for name, path in sharded.shards.items():
            assert (rev_parse(path, status_ref(device)) is not None) == (name == sharded.owner(device))
        assert rev_parse(sharded.aw.server, status_ref(device)) is None  # nothing went to the primary

    sharded.reconcile()
    devices = sharded.devices()
    assert {d: devices[d].last_report_seq for d in ROBOTS} == dict.fromkeys(ROBOTS, 1)
    (record,) = [r for r in devices[robot].records if r.id == deployment.deployment_id]
    assert record.status.value == "deployed"


def test_a_shard_that_is_down_does_not_stop_the_other_shards_robots_and_is_audited(sharded: Sharded) -> None:
    for device in ROBOTS:
        sharded.report(device)
    sharded.reconcile()
    for device in ROBOTS:
        sharded.report(device)
    down = sharded.shards["south"]
    down.rename(down.with_name("south-is-down.git"))

    result = sharded.reconcile()
    devices = sharded.devices()
    expected = {d: 2 if sharded.owner(d) == "north" else 1 for d in ROBOTS}
    assert {d: devices[d].last_report_seq for d in ROBOTS} == expected
    (line,) = [e for e in result.events if e.kind is AuditKind.STATUS_SHARD_UNREACHABLE]
    assert line.data["shard"] == "south" and "south" in str(line.data["error"])
    logged = [
        x for x in audit_lines(sharded.aw.world.state()) if x["event"]["kind"] == "status_shard_unreachable"
    ]
    assert [x["event"]["data"]["shard"] for x in logged] == ["south"]
    sharded.report(next(d for d in ROBOTS if sharded.owner(d) == "north"))  # more work meanwhile
    again = sharded.reconcile()
    assert [e.data["shard"] for e in again.events if e.kind is AuditKind.STATUS_SHARD_UNREACHABLE] == [
        "south"
    ]
    still = [
        x for x in audit_lines(sharded.aw.world.state()) if x["event"]["kind"] == "status_shard_unreachable"
    ]
    assert len(still) == 1  # the same outage is one line in the day's log, not one per reconcile

    down.with_name("south-is-down.git").rename(down)  # back: its robots' waiting reports come in
    result = sharded.reconcile()
    assert not [e for e in result.events if e.kind is AuditKind.STATUS_SHARD_UNREACHABLE]
    assert {d: f.last_report_seq for d, f in sharded.devices().items() if d in ROBOTS} == sharded.seq


def test_a_report_in_another_robots_shard_is_refused_with_an_audit_line(sharded: Sharded) -> None:
    robot = next(d for d in ROBOTS if sharded.owner(d) == "north")
    sharded.report(robot, into="south")  # the right robot, the wrong shard
    result = sharded.reconcile()
    assert sharded.devices()[robot].last_report_seq < 1  # never ingested
    (line,) = [e for e in result.events if e.device == robot and e.reason == "wrong_shard"]
    assert line.data == {"ref": status_ref(robot), "shard": "south", "expected_shard": "north"}
    assert sharded.reconcile().idle  # refused once; it wakes the controller again only if it moves

    sharded.report(robot)  # seq 2, into its own shard: that one counts
    sharded.reconcile()
    assert sharded.devices()[robot].last_report_seq == 2


def test_with_shards_a_report_left_on_the_primary_is_not_read(sharded: Sharded) -> None:
    robot = ROBOTS[0]
    config = sharded.aw.config(robot)  # no remote.status: pushes to the primary
    report = build_report(
        robot, 7, sharded.aw.world.clock.now, bundle_serial=1, stale=False, apps=[], deployments=[],
        last_error=None, drift=[],
    )  # fmt: skip
    push_report(config, sharded.aw.root / "primary-pusher.git", report)
    sharded.reconcile()
    assert sharded.devices()[robot].last_report_seq < 1


def test_an_idle_controller_wakes_for_a_report_in_a_shard_and_stays_idle_while_a_shard_is_down(
    sharded: Sharded,
) -> None:
    sharded.reconcile()
    assert sharded.reconcile().idle  # nothing new anywhere
    robot = next(d for d in ROBOTS if sharded.owner(d) == "south")
    sharded.report(robot)
    woke = sharded.reconcile()
    assert not woke.idle and sharded.devices()[robot].last_report_seq == 1
    assert sharded.reconcile().idle

    down = sharded.shards["north"]
    shutil.move(down, down.with_name("north-moved.git"))
    assert sharded.reconcile().idle  # a silent shard alone changes nothing to decide
    sharded.report(robot)  # ... but a report in the other one still wakes it
    assert not sharded.reconcile().idle
    assert sharded.devices()[robot].last_report_seq == 2


def test_the_idle_mark_outlives_a_long_outage_no_longer_than_a_full_reconcile_is_due(
    sharded: Sharded,
) -> None:
    sharded.reconcile()
    down = sharded.shards["north"]
    shutil.move(down, down.with_name("north-moved.git"))
    sharded.aw.world.clock.tick(timedelta(days=2).total_seconds())
    result = sharded.reconcile()  # due anyway: it runs, and says the shard is down
    assert not result.idle
    assert [e.data["shard"] for e in result.events if e.kind is AuditKind.STATUS_SHARD_UNREACHABLE] == [
        "north"
    ]


def test_get_devices_reads_each_robots_last_report_from_its_shard_and_warns_of_one_down(
    sharded: Sharded, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import json

    from tests.clirun import fleetcd

    for device in ROBOTS:
        sharded.report(device)
    sharded.reconcile()
    args = [
        "get",
        "devices",
        "--repo",
        str(sharded.aw.server),
        "--cache",
        str(tmp_path / "ops"),
        "-o",
        "json",
    ]
    shards = [a for name, path in sharded.shards.items() for a in ("--status-shard", f"{name}={path}")]

    code, out, err = fleetcd(capsys, *args, *shards)
    assert code == 0, err
    rows = {row["id"]: row for row in json.loads(out)}
    assert {d: rows[d]["desired"]["serial"] for d in ROBOTS} == dict.fromkeys(ROBOTS, 1)  # from the reports
    code, out, _ = fleetcd(capsys, *args)  # without the shards: no report is found on the primary
    assert {row["desired"]["serial"] for row in json.loads(out) if row["id"] in ROBOTS} == {None}

    sharded.shards["south"].rename(tmp_path / "south-away.git")
    code, out, err = fleetcd(capsys, *args, *shards)
    assert code == 0 and "warning: status shard south unreachable" in err
    rows = {row["id"]: row for row in json.loads(out)}
    assert {d: rows[d]["desired"]["serial"] for d in ROBOTS} == dict.fromkeys(ROBOTS, 1)  # last fetched


def test_a_running_controller_keeps_the_shards_digest_and_agrees_with_a_fresh_one(sharded: Sharded) -> None:
    """``controller run`` keeps the located reports' digest (controller.reconcile.refdigest)
    between idle checks: a report moved in a shard still wakes it, and ``--once`` marks alike."""
    running = replace(sharded.settings, cache=ReconcileCache())
    sharded.aw.world.settings = running
    sharded.reconcile()
    assert sharded.reconcile().idle
    robot = next(d for d in ROBOTS if sharded.owner(d) == "north")
    sharded.report(robot)
    assert not sharded.reconcile().idle
    assert sharded.reconcile().idle
    sharded.aw.world.settings = replace(running, cache=None)  # --once: nothing kept
    assert sharded.reconcile().idle
    sharded.report(robot)
    assert not sharded.reconcile().idle  # marked from scratch
    sharded.aw.world.settings = running  # the cache last saw the shards before that report
    assert sharded.reconcile().idle
    sharded.report(robot, into="south")  # in the wrong shard: located, refused, and it wakes
    assert not sharded.reconcile().idle
    assert sharded.reconcile().idle
