"""The story ``fleetcd demo`` tells, step by step, on the run :mod:`controller.demo.session` set up.

1. A fleet from the template: six robots (Berlin, Chicago, Tokyo; hardware revisions 1 and 2) in
   staging, canary and production; development keys; a bare repository as the git server.
2. The controller (``fleetcd controller run``) and one ``fleetcd-agent`` per robot, real processes.
3. navstack 1.0.0: unsigned it does not validate; signed, approved by two people, planned, merged.
   The live table follows it through the three waves until all six robots run it.
4. navstack 1.1.0: its new map loader cannot read amr-tyo-02's map (a device config value), so that
   robot's health check fails, its agent rolls it back inside the watch window, the canary wave
   crosses its failure threshold and the controller halts the rollout. The rollout's
   ``on_halt: rollback_all`` sends every robot that received 1.1.0 back to 1.0.0, staging included.
5. The rollout points back at 1.0.0, which every robot runs already: a new generation that
   redeploys nobody. Then a config change is a rollout: ``max_speed_mps`` 1.2 → 0.9 in
   ``configs/navstack/default.yaml`` needs the approvers again, ``plan`` lists the key per robot,
   and the new config goes out wave by wave as new deployments (each agent writes it, restarts the
   app and health-checks it); amr-tyo-02, whose own config sets 0.8, keeps its deployment.
6. What the fleet repository now says: robots, rollouts, the audit chain verified, the signed
   receipt of the halted generation, the robot's own view, and ``status.html``.
7. After the incident: ``fleetcd history amr-tyo-02 --at T`` for an instant while 1.1.0 was going
   out (handed to the robot, not yet reported on): what ran, from which commit, approved by whom,
   in which wave and under which gate.

Operator steps are the ``fleetcd`` commands a person would type, run in-process.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import click

from controller.demo import fleet as content
from controller.demo.containers import HEALTH_PATH
from controller.demo.fleet import APP, ROLLOUT
from controller.demo.processes import agent_command, fleetcd_command
from controller.demo.progress import Snapshot
from controller.demo.robotapp import BROKEN_MAP, HEALTHZ_ENV, healthz_tool
from controller.demo.robots import POLL_SECONDS, provision
from controller.demo.session import AUTHOR, Demo, DemoFailed, demo_session
from controller.ops.instant import oldest_report
from controller.records.model import Action
from controller.state.layout import STATUS_HTML, device_file
from controller.state.model import DeviceFile
from fleetcd.cli.exitcodes import Exit
from fleetcd.compat import UTC
from fleetcd.git.gitcli import git_binary
from fleetcd.git.objects import read_blob
from fleetcd.git.refs import STATE_BRANCH
from fleetcd.git.trees import open_repository
from fleetcd.git.worktree import commit_all

CONTROLLER_INTERVAL_SECONDS = 1
BROKEN_ROBOT = "amr-tyo-02"  # its device config names BROKEN_MAP
GOOD, BAD = "1.0.0", "1.1.0"
OLD_SPEED, NEW_SPEED = "1.2", "0.9"  # configs/navstack/default.yaml's max_speed_mps


def run_demo(invoke: Callable[[Sequence[str]], int], keep: Path | None, docker: bool = False) -> None:
    """Tell the story; the fleet lives in ``keep`` (kept) or a temporary directory (removed)."""
    with demo_session(invoke, keep, docker) as demo:
        tell(demo)


def tell(demo: Demo) -> None:
    _create_fleet(demo)
    _start_robots(demo)

    demo.step(f"Publish navstack {GOOD}: not signed yet, so the fleet does not validate")
    _publish(demo, GOOD)
    demo.run(["validate", "--repo", str(demo.fleet)], Exit.INVALID)
    demo.step("Sign it; two approvers approve the rollout (it reaches production); plan; merge")
    _sign_and_approve(demo, GOOD)
    demo.commit(f"Publish navstack {GOOD} and roll it out")
    demo.run(["plan", "--repo", str(demo.fleet), "--base", "HEAD~1"], Exit.CHANGES)
    demo.merge()

    demo.step(f"The controller rolls {GOOD} out wave by wave; each agent installs, health-checks, reports")
    demo.watch(lambda s: len(s.running(GOOD)) == len(demo.robots) and _phase(s, 1) == "completed")
    click.secho(f"All {len(demo.robots)} robots run navstack {GOOD}.", fg="green")

    demo.step(
        f"Publish navstack {BAD}: a new map loader, which cannot read {BROKEN_ROBOT}'s map {BROKEN_MAP}"
    )
    _publish(demo, BAD)
    _sign_and_approve(demo, BAD)
    demo.commit(f"Publish navstack {BAD} and roll it out")
    demo.merge()

    demo.step(
        f"{BROKEN_ROBOT} fails its health check and rolls back; the controller halts the rollout "
        "and (on_halt: rollback_all) sends every robot that got it back"
    )
    view = demo.view()
    last = demo.watch(lambda s: _phase(s, 2) == "halted" and _all_back(s) and view.has_receipt(2))
    _explain(last)
    _config_change(demo)

    demo.step("Stop the robots and the controller; what the fleet repository says now")
    demo.processes.stop_all()
    operator = ["--repo", str(demo.server), "--cache", str(demo.home / "operator-cache")]
    demo.run(["get", "devices", *operator], Exit.OK)
    demo.run(["get", "rollouts", *operator], Exit.OK)
    demo.run(["audit", "verify", *operator], Exit.OK)
    demo.run(["receipt", ROLLOUT, "--generation", "2", *operator], Exit.OK)
    _robot_view(demo, BROKEN_ROBOT)
    _after_the_incident(demo, operator)
    _finish(demo)


def _config_change(demo: Demo) -> None:
    demo.step(f"Point the rollout back at navstack {GOOD}: every robot runs it, nothing is downloaded")
    content.write_rollout(demo.fleet, GOOD)
    rollout = demo.fleet / "rollouts" / f"{ROLLOUT}.yaml"
    demo.run(["approve", str(rollout), "--all-approvers", *demo.gpg], Exit.OK)
    demo.commit(f"Roll navstack back to {GOOD}")
    demo.merge()
    demo.watch(lambda s: _phase(s, 3) == "completed")

    demo.step(
        f"A config change is a rollout: max_speed_mps {OLD_SPEED} -> {NEW_SPEED} in the default config, "
        "re-approved, wave by wave"
    )
    content.set_default_value(demo.fleet, "max_speed_mps", OLD_SPEED, NEW_SPEED)
    click.echo(f"(configs/{APP}/default.yaml: max_speed_mps {OLD_SPEED} → {NEW_SPEED})")
    demo.run(["validate", "--repo", str(demo.fleet)], Exit.INVALID)  # the approvals cover the config
    demo.run(["approve", str(rollout), "--all-approvers", *demo.gpg], Exit.OK)
    demo.commit(f"navstack: max_speed_mps {OLD_SPEED} -> {NEW_SPEED}")
    demo.run(["plan", "--repo", str(demo.fleet), "--base", "HEAD~1"], Exit.CHANGES)
    demo.merge()
    demo.watch(lambda s: _phase(s, 4) == "completed")
    for robot in demo.robots:
        config = content.written_config(demo.robot_home(robot) / "state") or {}
        speed = config.get("max_speed_mps")
        note = " (its own device config)" if robot.id == BROKEN_ROBOT else ""
        click.echo(f"  {robot.id}: navstack {GOOD} runs with max_speed_mps {speed}{note}")


def _create_fleet(demo: Demo) -> None:
    demo.step("A fleet from the template: six robots, development keys, a bare repository as git server")
    fleet, git = demo.fleet, git_binary()
    demo.run(["init", str(fleet)], Exit.OK)
    content.adapt_template(fleet)
    demo.robots = content.read_robots(fleet, [_free_port() for _ in range(6)])
    content.write_device_configs(fleet, demo.robots)
    commit_all(fleet, "Start the fleet from the template", AUTHOR)
    demo.run(["keys", "generate", "--repo", str(fleet), *demo.gpg], Exit.OK)
    demo.commit("Development keys for the demo fleet")
    subprocess.run([git, "init", "-q", "--bare", "-b", "main", str(demo.server)], check=True)
    subprocess.run([git, "-C", str(fleet), "remote", "add", "origin", str(demo.server)], check=True)
    demo.merge()
    for r in demo.robots:
        click.echo(f"  {r.id:<11} {r.cohort:<10} {r.site:<8} hardware r{r.revision}  app port {r.port}")


def _start_robots(demo: Demo) -> None:
    docker = demo.containers
    executor: Literal["tarball", "docker"] = "docker" if docker is not None else "tarball"
    demo.step(f"Start the controller and one agent per robot (real processes, {executor} executor)")
    probe = healthz_tool(_probe(demo), sys.executable)
    path = HEALTH_PATH if docker is not None else "/healthz"
    for robot in demo.robots:
        home = demo.robot_home(robot)
        config = provision(
            robot,
            home,
            server=demo.server,
            fleet_root=demo.fleet,
            probe=probe,
            executor=executor,
            docker_base_url=docker.host if docker is not None else None,
        )
        argv = [*agent_command(), "--config", str(config), "run"]
        env = {HEALTHZ_ENV: f"http://127.0.0.1:{robot.port}{path}"}
        demo.processes.start(robot.id, argv, home / "agent.log", env)
    argv = [*fleetcd_command(), "controller", "run", "--repo", str(demo.server), *demo.gpg]
    argv += ["--cache", str(demo.home / "controller" / "cache")]
    argv += ["--interval", str(CONTROLLER_INTERVAL_SECONDS)]
    demo.processes.start("controller", argv, demo.home / "controller" / "controller.log")
    click.echo(f"  fleetcd controller run --repo fleet.git --interval {CONTROLLER_INTERVAL_SECONDS}")
    click.echo(f"  fleetcd-agent --config robots/<id>/agent.yaml run   (x6, polling every {POLL_SECONDS} s)")
    if docker is not None:
        click.echo(f"  images: {docker.repository} (docker-registry) ; logs: robots/<id>/agent.log")
    else:
        click.echo(f"  artifacts: http://127.0.0.1:{demo.artifacts.port}/ ; logs: robots/<id>/agent.log")


def _probe(demo: Demo) -> Path:
    return demo.home / "robots" / "bin" / "navstack-healthz"


def _publish(demo: Demo, version: str) -> None:
    if demo.containers is not None:
        where = demo.containers.publish(version)
        artifact = content.image_artifact(where, demo.containers.command)
    else:
        packed = content.pack(demo.home / "artifacts", version)
        where = demo.artifacts.url(packed)
        artifact = content.tarball_artifact(packed, where, sys.executable)
    content.write_release(demo.fleet, version, artifact, _probe(demo))
    content.write_rollout(demo.fleet, version)
    click.echo(
        f"(wrote releases/{APP}/{version}.yaml, its app at {where}; rollouts/{ROLLOUT}.yaml → {version})"
    )


def _sign_and_approve(demo: Demo, version: str) -> None:
    release = demo.fleet / "releases" / APP / f"{version}.yaml"
    demo.run(["sign", str(release), *demo.gpg], Exit.OK)
    rollout = demo.fleet / "rollouts" / f"{ROLLOUT}.yaml"
    demo.run(["approve", str(rollout), "--all-approvers", *demo.gpg], Exit.OK)
    demo.run(["validate", "--repo", str(demo.fleet)], Exit.OK)


def _phase(snapshot: Snapshot, generation: int) -> str | None:
    state = snapshot.rollout
    return state.phase.value if state is not None and state.generation == generation else None


def _all_back(snapshot: Snapshot) -> bool:
    """Every robot runs the good version again: the halt's ``rollback_all`` reached staging too."""
    return all(row.running == GOOD for row in snapshot.rows)


def _explain(snapshot: Snapshot) -> None:
    for row in snapshot.rows:
        rid = row.robot.id
        if rid == BROKEN_ROBOT:
            click.echo(f"  {rid}: its agent rolled back to {row.running}: {row.full_message}")
        elif row.robot.cohort == "canary" and row.controller.startswith("rollback"):
            click.echo(f"  {rid}: healthy on {BAD}, but its wave failed: the controller rolled it back")
        elif row.robot.cohort == "staging" and row.controller.startswith("rollback"):
            click.echo(
                f"  {rid}: its staging wave had passed on {BAD}; the halt (on_halt: rollback_all) "
                f"sent it back to {row.running}"
            )
        elif row.robot.cohort == "canary":
            click.echo(
                f"  {rid}: its {BAD} deployment was withdrawn when the wave failed; runs {row.running}"
            )
    state = snapshot.rollout
    if state is not None:
        click.echo(
            f"  rollout {state.name} generation {state.generation}: {state.phase.value} ({state.reason})"
        )
    got_bad = {row.robot.cohort for row in snapshot.rows if BAD in (row.running, row.now.split(" ")[0])}
    if "production" not in got_bad:
        still = [row.robot.id for row in snapshot.rows if row.running == BAD]
        click.echo(
            f"  production never got {BAD}; robots still on it: {', '.join(still) or 'none'} "
            f"(every robot runs {GOOD} again)"
        )


def _robot_view(demo: Demo, robot: str) -> None:
    """The robot's own account, from its local state (``fleetcd-agent status``, no network)."""
    config = demo.home / "robots" / robot / "agent.yaml"
    argv = [*agent_command(), "--config", str(config), "status"]
    click.secho(f"$ fleetcd-agent --config robots/{robot}/agent.yaml status", fg="cyan")
    done = subprocess.run(argv, capture_output=True, text=True, env=demo.processes.environment(), timeout=60)
    click.echo((done.stdout + done.stderr).rstrip())


def _after_the_incident(demo: Demo, operator: list[str]) -> None:
    """``history --at`` an instant mid-rollout: after the controller handed amr-tyo-02 the bad
    release and before the robot's first report about it (an agent reports once per cycle, so
    the download, switch, failed health check and rollback arrive as one report)."""
    demo.step(f"After the incident: what ran on {BROKEN_ROBOT} while {BAD} was going out, and on whose word")
    repo = open_repository(demo.server)
    data = read_blob(repo, STATE_BRANCH, device_file(BROKEN_ROBOT))
    records = DeviceFile.model_validate_json(data).records if data is not None else ()
    handed = [r.created_at for r in records if r.version == BAD and r.action is Action.DEPLOY]
    first = oldest_report(
        repo,
        BROKEN_ROBOT,
        datetime.now(UTC),
        lambda report: any(d.version == BAD for d in report.deployments),
    )
    if not handed or first is None:
        raise DemoFailed(
            f"no record or report of {BROKEN_ROBOT} and {BAD}; see robots/{BROKEN_ROBOT}/agent.log"
        )
    sent, said = min(handed).astimezone(UTC), first.reported_at.astimezone(UTC)
    instant = sent.replace(microsecond=0) + timedelta(seconds=1)  # whole seconds for the command line
    if instant >= said:
        instant = sent + (said - sent) / 2
    demo.run(["history", BROKEN_ROBOT, "--at", instant.isoformat(), *operator], Exit.OK)


def _finish(demo: Demo) -> None:
    data = read_blob(open_repository(demo.server), STATE_BRANCH, STATUS_HTML)
    if data is None:
        raise DemoFailed(f"no {STATUS_HTML} on the state branch")
    # Without --keep the fleet is removed, so the page goes where it outlives the demo.
    page = demo.home / STATUS_HTML if demo.kept else Path(tempfile.gettempdir()) / "fleetcd-demo-status.html"
    page.write_bytes(data)
    click.secho("\nDemo complete.", fg="green", bold=True)
    click.echo(f"Status page (the state branch's {STATUS_HTML}): {page}")
    if demo.kept:
        click.echo(f"Kept in {demo.home}: fleet/ (the work tree; origin is fleet.git, the server),")
        click.echo("robots/<id>/ (agent.yaml, state/, agent.log), controller/, gnupg/ (development keys).")
        click.echo(f"  fleetcd history {BROKEN_ROBOT} --repo {demo.server}")


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for one robot's app."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
