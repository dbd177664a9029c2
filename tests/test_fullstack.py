"""fleetcd end to end on real services: gitolite3 + OpenSSH as the git server, the real controller
over SSH, four robots each with its own dockerd, network namespace and SSH key running the real
agent with the Docker executor against a private registry (tests/fullstack.py).

Each test rolls out its own app, so they share the (slow to start) stack but not each other's
outcome. Under CI (``FLEETCD_REQUIRE_SERVICES=1``) a missing gitolite, sshd or Docker fails them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from agent.loop import run_once
from agent.report.build import build_report
from agent.report.push import push_report
from controller.audit.events import AuditKind
from controller.delivery.write import delivery_ref
from controller.reconcile.statebranch import StateSnapshot
from controller.records.model import Action
from controller.state.model import RolloutPhase, WavePhase
from fleetcd.errors import PushRejected
from fleetcd.git.hostkeys import HostKeyPolicy
from fleetcd.git.refs import STATE_BRANCH, desired_ref, status_ref
from fleetcd.git.remote import SshKey, list_remote
from fleetcd.reports import DeploymentReport
from tests.conftest import require_service
from tests.dockerd import DockerWorld, docker_world, free_port
from tests.fullstack import (
    ROBOTS,
    ROUND_SECONDS,
    FullStack,
    RobotsUnavailable,
    Round,
    httpd_with_metrics,
    rollout_phase,
    wave_phase,
    waves,
)
from tests.gitolite import CONTROLLER, Gitolite, GitoliteUnavailable
from tests.gitrepos import rev_parse
from tests.gpgkeys import KeyFactory
from tests.sim.agent import served_version
from tests.sim.world import assert_no_duplicates, audit_lines

pytestmark = [pytest.mark.docker, pytest.mark.gitolite, pytest.mark.slow]
__all__ = ["docker_world"]  # the session fixture, shared with the other Docker tests
ANSWER_WAIT_SECONDS = 10.0  # how long a just-switched container may take to answer (not asserted)


@pytest.fixture(scope="module")
def gitolite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gitolite]:
    try:
        server = Gitolite(tmp_path_factory.mktemp("gitolite"), list(ROBOTS)).__enter__()
    except (GitoliteUnavailable, RuntimeError, OSError) as exc:
        require_service("gitolite", False, str(exc))
        raise
    try:
        yield server
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, keys: KeyFactory, gitolite: Gitolite, docker_world: DockerWorld
) -> Iterator[FullStack]:
    try:
        built = FullStack.create(tmp_path_factory.mktemp("stack"), keys, gitolite, docker_world)
    except RobotsUnavailable as exc:
        require_service("docker", False, str(exc))
        raise
    try:
        yield built
    finally:
        built.close()


def first_round_running(rounds: list[Round], device: str, app: str, version: str) -> int:
    return next(i for i, r in enumerate(rounds) if r.running[device].get(app) == version)


def reported(done: Round, device: str, app: str, version: str) -> list[DeploymentReport]:
    """What the robot's report of that round says about its deployment of ``app`` ``version``."""
    report = done.cycles[device].report
    assert report is not None, done.cycles[device].errors
    return [d for d in report.deployments if (d.app, d.version) == (app, version)]


def answers(stack: FullStack, device: str, port: int, version: str) -> str | None:
    """The version the robot's app answers with on the robot's own loopback."""
    return stack.robots[device].call(served_version, port, version, ANSWER_WAIT_SECONDS)


def test_a_release_goes_through_three_waves_to_robots_over_ssh_running_docker(stack: FullStack) -> None:
    port = free_port()
    stack.publish("web", "1.0.0", port, waves())

    rounds = stack.drive(lambda s: rollout_phase(s, "web") is RolloutPhase.COMPLETED)

    first = {device: first_round_running(rounds, device, "web", "1.0.0") for device in ROBOTS}
    assert first["stg-1"] < first["can-1"] == first["can-2"] < first["prod-1"], first
    staging_only = rounds[first["stg-1"]].running
    assert [d for d in ROBOTS if "web" in staging_only[d]] == ["stg-1"]  # the others wait for the soak
    for device in ROBOTS:
        cycle = rounds[first[device]].cycles[device]
        assert cycle.error is None and cycle.pushed, (device, cycle.errors)
        assert answers(stack, device, port, "1.0.0") == "1.0.0"
    assert served_version(port, limit_s=0) is None  # each app listens on its robot's loopback only
    state = stack.state()
    assert [(w.name, w.phase) for w in state.rollouts["web"].waves] == [
        ("staging", WavePhase.PASSED),
        ("canary", WavePhase.PASSED),
        ("production", WavePhase.PASSED),
    ]
    for device in ROBOTS:
        records = [(r.version, r.activity.value) for r in state.devices[device].records if r.app == "web"]
        assert records == [("1.0.0", "deployed")], (device, records)
    assert "receipts/web/1.yaml" in state.files


def test_a_release_failing_its_probe_on_a_canary_is_rolled_back_and_never_reaches_production(
    stack: FullStack,
) -> None:
    port, metrics_port = free_port(), free_port()
    stack.publish("nav", "1.0.0", port, {"type": "all_at_once"})
    stack.drive(lambda s: rollout_phase(s, "nav") is RolloutPhase.COMPLETED)
    good = {device: stack.robots[device].container_id("nav", "1.0.0") for device in ROBOTS}
    stack.robots["can-1"].occupy(metrics_port)  # another program of this robot holds the new port
    bad = stack.publish("nav", "1.1.0", port, waves(), command=httpd_with_metrics(port, metrics_port))

    def halted_and_can_2_back(state: StateSnapshot) -> bool:
        records = state.devices["can-2"].records
        back = any(r.action is Action.ROLLBACK and r.activity.value == "deployed" for r in records)
        return rollout_phase(state, "nav") is RolloutPhase.HALTED and back

    rounds = stack.drive(halted_and_can_2_back)

    # can-1 tried 1.1.0, its http probe failed, and it went back to the very same 1.0.0 container.
    tried = next(r for r in rounds if reported(r, "can-1", "nav", "1.1.0"))
    (report,) = reported(tried, "can-1", "nav", "1.1.0")
    assert report.activity == "rolled_back" and "healthz" in report.message, report
    assert tried.running["can-1"]["nav"] == "1.0.0"
    assert stack.robots["can-1"].container_id("nav", "1.0.0") == good["can-1"]
    assert answers(stack, "can-1", port, "1.0.0") == "1.0.0"
    # can-2 ran 1.1.0 fine; the controller's rollback deployment took it back to 1.0.0.
    assert any(r.running["can-2"].get("nav") == "1.1.0" for r in rounds)
    assert answers(stack, "can-2", port, "1.0.0") == "1.0.0"
    # production never got it: not even the image was pulled there.
    assert not stack.robots["prod-1"].has_image(bad)
    assert stack.robots["prod-1"].container_id("nav", "1.0.0") == good["prod-1"]
    assert answers(stack, "prod-1", port, "1.0.0") == "1.0.0"

    state = stack.state()
    assert wave_phase(state, "nav", "staging") is WavePhase.PASSED
    assert wave_phase(state, "nav", "canary") is WavePhase.FAILED
    assert wave_phase(state, "nav", "production") is WavePhase.PENDING
    assert all(r.version != "1.1.0" for r in state.devices["prod-1"].records if r.app == "nav")
    (rollback,) = [r for r in state.devices["can-2"].records if r.action is Action.ROLLBACK]
    assert (rollback.app, rollback.version) == ("nav", "1.0.0")
    kinds = {line["event"]["kind"] for line in audit_lines(state) if line["event"].get("rollout") == "nav"}
    assert {AuditKind.WAVE_FAILED, AuditKind.ROLLOUT_HALTED, AuditKind.ROLLBACK} <= kinds


def test_a_robot_key_is_refused_another_robots_status_ref_and_sees_only_its_own_desired_state(
    stack: FullStack, tmp_path: Path
) -> None:
    server, robot = stack.server, stack.robots["stg-1"]
    victim = status_ref("can-1")
    before = rev_parse(server.repo_path(), victim)
    impostor = stack.config("can-1", key_of="stg-1", state_dir=tmp_path / "impostor")
    lie = build_report(
        "can-1", 10_000, stack.clock.now, bundle_serial=None, stale=False, apps=[], deployments=[],
        last_error=None, drift=[],
    )  # fmt: skip

    with pytest.raises(PushRejected) as raised:
        robot.call(push_report, impostor, tmp_path / "impostor.git", lie)
    assert raised.value.ref == victim
    cycle = robot.call(run_once, impostor, stack.clock.now)
    assert not cycle.pushed and any(isinstance(e, PushRejected) for e in cycle.errors), cycle.errors
    assert rev_parse(server.repo_path(), victim) == before

    def advertised(user: str) -> set[str]:
        repo = pygit2.init_repository(str(tmp_path / f"ls-{user}.git"), bare=True)
        key = SshKey(user, server.key(user))
        pin = HostKeyPolicy(pinned_sha256=(server.host_fingerprint,))
        return set(list_remote(repo, server.url(), ["refs/"], credentials=key, host_keys=pin))

    assert robot.call(advertised, "stg-1") == {desired_ref("stg-1")}
    assert {delivery_ref(d, namespaces=True) for d in ROBOTS} <= advertised(CONTROLLER)
    own = stack.config("stg-1")
    assert robot.call(run_once, own, stack.clock.now).error is None
    fetched = set(pygit2.Repository(str(Path(own.state_dir or "") / "repo.git")).references)
    assert fetched <= {desired_ref("stg-1"), status_ref("stg-1")}


def test_a_controller_killed_between_waves_restarts_and_completes_the_rollout_with_a_clean_audit_log(
    stack: FullStack, tmp_path: Path
) -> None:
    port = free_port()
    stack.publish("map", "1.0.0", port, waves())
    stack.drive(lambda s: wave_phase(s, "map", "staging") is WavePhase.SOAKING)
    stack.clock.tick(ROUND_SECONDS)  # staging has soaked: this reconcile would start the canary wave
    published = rev_parse(stack.server.repo_path(), STATE_BRANCH)

    stack.reconcile_killed_at("state-committed")

    assert rev_parse(stack.server.repo_path(), STATE_BRANCH) == published
    assert "map" not in {d.app for d in stack.sim.bundle("can-1", stack.clock.now).deployments}
    stack.drive(lambda s: wave_phase(s, "map", "canary") is WavePhase.SOAKING)  # restarted
    stack.clock.tick(ROUND_SECONDS)
    stack.reconcile_killed_at("state-pushed")  # production started, then killed before it settled
    assert "map" in {d.app for d in stack.sim.bundle("prod-1", stack.clock.now).deployments}
    rounds = stack.drive(lambda s: rollout_phase(s, "map") is RolloutPhase.COMPLETED)

    assert any(r.running["prod-1"].get("map") == "1.0.0" for r in rounds)
    for device in ROBOTS:
        assert answers(stack, device, port, "1.0.0") == "1.0.0"
    state = stack.state()
    assert_no_duplicates(state)
    kinds = [line["event"]["kind"] for line in audit_lines(state) if line["event"].get("rollout") == "map"]
    assert kinds.count(AuditKind.ROLLOUT_CREATED) == 1 and kinds.count(AuditKind.WAVE_STARTED) == 3
    fleetcd = Path(sys.executable).with_name("fleetcd")
    argv = [
        str(fleetcd),
        "audit",
        "verify",
        "--repo",
        str(stack.server.repo_path()),
        "--cache",
        str(tmp_path),
    ]
    done = subprocess.run([*argv, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["ok"] and verdict["lines"] == len(audit_lines(state))
