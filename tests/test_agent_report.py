"""Agent report step: build (pure), queue (outbox), push (real git) — and the real controller ingests it.

Rejections come from real servers: a ``pre-receive`` hook in a local bare repository here, gitolite's
ACL in test_agent_gitolite.py. A refused push must raise, never look delivered.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pygit2
import pytest

from agent.report.build import add_event, build_report
from agent.report.outbox import Outbox
from agent.report.push import deliver_pending, push_report, push_status
from agent.sync.desired import fetch_desired
from agent.trustcheck import TrustState, verify_desired
from controller.ingest.reports import read_reports
from controller.state.model import WavePhase
from fleetcd.compat import UTC
from fleetcd.desired.bundle import canonical_bytes
from fleetcd.errors import PushRejected, TransportError
from fleetcd.git.objects import commit, read_blob, ref_target, update_refs, write_tree
from fleetcd.git.refs import status_ref
from fleetcd.reports import (
    MAX_DEPLOYMENTS,
    MAX_EVENTS,
    MAX_REPORT_BYTES,
    MAX_SEQ,
    MESSAGE_MAX,
    STATUS_FILE,
    DeploymentReport,
    InstalledApp,
    ReportEvent,
    StatusReport,
)
from tests.gitrepos import install_hook, rev_parse
from tests.gpgkeys import KeyFactory
from tests.sim.provision import ROBOT, ProvisionedFleet, provisioned_fleet
from tests.sim.world import START

NOW = START + timedelta(minutes=5)


@pytest.fixture
def aw(tmp_path: Path, keys: KeyFactory) -> ProvisionedFleet:
    return provisioned_fleet(tmp_path, keys)


def dep(n: int = 0, *, at: datetime = NOW, activity: str = "deployed", **fields: object) -> DeploymentReport:
    return DeploymentReport.model_validate(
        {
            "deployment_id": f"dep-{n:024x}",
            "app": f"app{n}",
            "version": "1.0.0",
            "activity": activity,
            "updated_at": at,
            **fields,
        }
    )


def report(
    seq: int, *, device: str = ROBOT, deployments: list[DeploymentReport] | None = None
) -> StatusReport:
    return build_report(
        device,
        seq,
        NOW + timedelta(seconds=seq),
        bundle_serial=1,
        stale=False,
        apps=[InstalledApp(app="nav", current="1.0.0")],
        deployments=deployments or [],
        last_error=None,
        drift=[],
    )


def server_report(server: Path, device: str = ROBOT) -> StatusReport | None:
    found, problem = read_reports(pygit2.Repository(str(server)), [device])[device]
    assert problem is None, problem
    return found


# --- build: pure ---------------------------------------------------------------------------------


def test_build_report_is_pure_and_clips_what_the_format_bounds() -> None:
    def build() -> StatusReport:
        return build_report(
            ROBOT,
            7,
            NOW,
            bundle_serial=3,
            stale=True,
            apps=[],
            deployments=[dep(1), dep(0)],
            last_error="x" * 2000,
            drift=["/b", "/a", "/b"],
        )

    first = build()
    assert build() == first
    assert first.last_error is not None and len(first.last_error) == MESSAGE_MAX
    assert first.last_error.endswith("…")
    assert first.drift == ["/a", "/b"]
    assert [d.app for d in first.deployments] == ["app0", "app1"]
    assert (first.seq, first.stale, first.bundle_serial, first.device) == (7, True, 3, ROBOT)


def test_only_the_newest_deployments_are_reported() -> None:
    many = [dep(n, at=NOW + timedelta(seconds=n)) for n in range(MAX_DEPLOYMENTS + 5)]
    built = build_report(
        ROBOT, 1, NOW, bundle_serial=None, stale=False, apps=[], deployments=many, last_error=None, drift=[]
    )
    assert sorted(d.app for d in built.deployments) == sorted(
        f"app{n}" for n in range(5, MAX_DEPLOYMENTS + 5)
    )


def test_add_event_keeps_the_newest_events() -> None:
    current = dep()
    for n in range(MAX_EVENTS + 7):
        current = add_event(
            current, ReportEvent(at=NOW + timedelta(seconds=n), activity="downloading", message=str(n))
        )
    assert [e.message for e in current.events] == [str(n) for n in range(7, MAX_EVENTS + 7)]


def test_a_history_too_big_for_the_format_is_trimmed_to_fit_keeping_the_newest_events() -> None:
    long = "m" * MESSAGE_MAX
    events = [
        ReportEvent(at=NOW + timedelta(seconds=n), activity="watching", message=long)
        for n in range(MAX_EVENTS)
    ]
    heavy = [dep(n, message=long, events=events) for n in range(MAX_DEPLOYMENTS)]
    drift = [f"/etc/app/{n:03d}/" + "d" * 490 for n in range(64)]
    built = build_report(
        ROBOT, 1, NOW, bundle_serial=1, stale=False, apps=[], deployments=heavy, last_error=long, drift=drift
    )
    assert len(canonical_bytes(built)) <= MAX_REPORT_BYTES
    kept = built.deployments[0].events
    assert 0 < len(kept) < MAX_EVENTS and kept[-1] == events[-1]


# --- push: the controller ingests what the agent pushes --------------------------------------------


def test_the_controller_ingests_the_agents_report_and_the_wave_moves_on(aw: ProvisionedFleet) -> None:
    config = aw.config()
    files = fetch_desired(config, aw.repo_dir())
    assert files is not None
    verified, _ = verify_desired(config, files, TrustState(), NOW)
    (deployment,) = verified.bundle.deployments
    claim = DeploymentReport(
        deployment_id=deployment.deployment_id,
        app=deployment.app,
        version=deployment.version,
        activity="deployed",
        updated_at=NOW,
    )
    first = push_report(config, aw.repo_dir(), report(1, deployments=[claim]))
    second = push_report(config, aw.repo_dir(), report(2, deployments=[claim]))

    server = pygit2.Repository(str(aw.server))
    pushed = server[pygit2.Oid(hex=second)]
    assert isinstance(pushed, pygit2.Commit) and [str(p) for p in pushed.parent_ids] == [first]
    assert rev_parse(aw.server, status_ref(ROBOT)) == second
    stored = server_report(aw.server)
    assert stored is not None and stored.seq == 2 and stored.deployments == [claim]
    assert read_blob(server, status_ref(ROBOT), STATUS_FILE) == canonical_bytes(
        report(2, deployments=[claim])
    )

    aw.world.clock.tick(10)
    aw.world.reconcile()
    assert aw.world.wave("staging") is WavePhase.SOAKING


def test_a_pre_receive_hook_rejection_raises_naming_the_ref_and_is_never_recorded_as_sent(
    aw: ProvisionedFleet,
) -> None:
    config = aw.config()
    hook = install_hook(aw.server, "pre-receive", "echo 'status pushes are closed today' >&2\nexit 1\n")
    with pytest.raises(PushRejected) as raised:
        push_report(config, aw.repo_dir(), report(1))
    assert raised.value.ref == status_ref(ROBOT)
    assert "status pushes are closed today" in str(raised.value)
    assert rev_parse(aw.server, status_ref(ROBOT)) is None
    local = pygit2.Repository(str(aw.repo_dir()))
    assert ref_target(local, status_ref(ROBOT)) is None, "a refused report must not count as delivered"

    hook.unlink()
    pushed = push_report(config, aw.repo_dir(), report(2))
    commit = pygit2.Repository(str(aw.server))[pygit2.Oid(hex=pushed)]
    assert isinstance(commit, pygit2.Commit) and commit.parent_ids == []


def test_a_reflashed_robot_rebases_on_the_servers_report_and_lifts_its_seq(aw: ProvisionedFleet) -> None:
    config = aw.config()
    push_report(config, aw.repo_dir(), report(1))
    before = push_report(config, aw.repo_dir(), report(2))
    for path in sorted(aw.repo_dir().rglob("*"), reverse=True):  # the reflash wipes the state dir
        path.unlink() if path.is_file() else path.rmdir()
    after = push_report(config, aw.repo_dir(), report(1))
    commit = pygit2.Repository(str(aw.server))[pygit2.Oid(hex=after)]
    assert isinstance(commit, pygit2.Commit) and [str(p) for p in commit.parent_ids] == [before]
    stored = server_report(aw.server)
    assert stored is not None and stored.seq == 3


def test_after_a_rebase_the_pushed_seq_is_the_lifted_one_so_the_next_report_goes_above_it(
    aw: ProvisionedFleet,
) -> None:
    """The loop stores the pushed seq in push.json and numbers the next report above it: it must be
    the server's + 1, not the reflashed robot's own 1 (its next reports would be ignored)."""
    config = aw.config()
    for seq in (1, 2, 3):
        push_report(config, aw.repo_dir(), report(seq))
    for path in sorted(aw.repo_dir().rglob("*"), reverse=True):  # the reflash wipes the state dir
        path.unlink() if path.is_file() else path.rmdir()

    pushed = push_status(config, aw.repo_dir(), report(1))

    assert pushed.report.seq == 4
    stored = server_report(aw.server)
    assert stored is not None and stored.seq == 4


ABSURD_SEQS = {
    "seq-10**30": b'{"seq": 1000000000000000000000000000000}',
    "seq-5000-digits": b'{"seq": ' + b"9" * 5000 + b"}",
    "seq-max": b'{"seq": %d}' % MAX_SEQ,
    "seq-a-string": b'{"seq": "99"}',
    "seq-a-bool": b'{"seq": true}',
    "nested-too-deep": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "not-json": b"\xff\xfe",
}


@pytest.mark.parametrize("planted", list(ABSURD_SEQS.values()), ids=list(ABSURD_SEQS))
def test_a_server_report_with_an_absurd_seq_is_unreadable_and_the_robot_keeps_reporting(
    aw: ProvisionedFleet, planted: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Someone planted a report no agent sends on the robot's ref: the robot's next push rebases
    on it without trying to beat its seq (and says why), and the controller ingests that push."""
    config = aw.config()
    first = push_report(config, aw.repo_dir(), report(1))
    server = pygit2.Repository(str(aw.server))
    planted_commit = commit(
        server,
        None,
        write_tree(server, {STATUS_FILE: planted}),
        "planted",
        [pygit2.Oid(hex=first)],
        ("x", "x@x"),
        NOW,
    )
    update_refs(server, {status_ref(ROBOT): (pygit2.Oid(hex=first), planted_commit)})

    with caplog.at_level("WARNING", logger="agent.report.push"):
        pushed = push_report(config, aw.repo_dir(), report(2))
    parent = pygit2.Repository(str(aw.server))[pygit2.Oid(hex=pushed)]
    assert isinstance(parent, pygit2.Commit) and parent.parent_ids == [planted_commit]
    assert "keeping this robot's own seq" in caplog.text
    stored = server_report(aw.server)
    assert stored is not None and stored.seq == 2


def test_a_report_for_another_device_is_refused_before_any_push(aw: ProvisionedFleet) -> None:
    with pytest.raises(ValueError, match="can-1"):
        push_report(aw.config(), aw.repo_dir(), report(1, device="can-1"))


# --- outbox: offline robots keep the latest report -------------------------------------------------


def test_the_outbox_keeps_the_latest_report_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox"
    Outbox(path).put(report(4))
    restarted = Outbox(path)
    assert restarted.pending() == report(4)
    restarted.put(report(3))  # an older report never replaces a newer one
    assert Outbox(path).pending() == report(4)
    restarted.put(report(5))
    assert Outbox(path).pending() == report(5)
    assert os.stat(path).st_mode & 0o777 == 0o600
    restarted.sent(4)  # an older report was delivered: 5 still waits
    assert Outbox(path).pending() == report(5)
    restarted.sent(5)
    assert Outbox(path).pending() is None and not path.exists()
    restarted.sent(6)  # nothing waiting: nothing to do


def test_an_offline_robot_delivers_its_queued_report_when_the_server_is_back(aw: ProvisionedFleet) -> None:
    outbox = Outbox(aw.root / "outbox")
    offline = aw.config(url=str(aw.root / "unreachable.git"))
    outbox.put(report(1))
    with pytest.raises(TransportError):
        deliver_pending(offline, aw.repo_dir(), outbox)
    outbox.put(report(2))
    assert Outbox(aw.root / "outbox").pending() == report(2)
    pushed = deliver_pending(aw.config(), aw.repo_dir(), Outbox(aw.root / "outbox"))
    assert pushed is not None and rev_parse(aw.server, status_ref(ROBOT)) == pushed
    assert Outbox(aw.root / "outbox").pending() is None
    stored = server_report(aw.server)
    assert stored is not None and stored.seq == 2
    assert deliver_pending(aw.config(), aw.repo_dir(), outbox) is None


def test_a_report_dated_1970_is_still_pushed(aw: ProvisionedFleet) -> None:
    old = report(1).model_copy(update={"reported_at": datetime(1970, 1, 1, 0, 1, tzinfo=UTC)})
    pushed = push_report(aw.config(), aw.repo_dir(), old)
    assert rev_parse(aw.server, status_ref(ROBOT)) == pushed
