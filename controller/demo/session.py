"""One demo run: its folder, keyring and processes, the helpers each story step uses, and the cleanup.

:func:`demo_session` creates the run's folder (``--keep DIR`` or a temporary one), a short-pathed
GnuPG home for the development keys, the artifact server and the process table, hands the run to
the story (:mod:`controller.demo.story` imports this module, never the reverse) — with ``--docker``
also a registry and the app's images (:class:`controller.demo.containers.ContainerWorld`) — and
then, whatever happened (an error, Ctrl-C, SIGTERM or SIGHUP), stops every process the run
started, removes the run's containers and images, kills the keyring's gpg agents and removes what is
not kept. With ``--keep`` the keyring is copied to ``DIR/gnupg`` so the fleet can be changed later.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import click

from controller.demo.containers import ContainerWorld
from controller.demo.engine import require_docker_demo
from controller.demo.fleet import APP, ArtifactServer, Robot
from controller.demo.processes import MARKER_ENV, Processes
from controller.demo.progress import Fleetview, Snapshot, watch_until
from fleetcd.cli.exitcodes import Exit
from fleetcd.errors import SetupError
from fleetcd.git.gitcli import push
from fleetcd.git.worktree import commit_all

AUTHOR = "fleetcd demo <demo@fleetcd.invalid>"
PHASE_LIMIT_SECONDS = 100.0  # a rollout phase taking longer means something is broken


class DemoFailed(click.ClickException):
    """The story did not go as told: a bug, reported with where the logs are (exit 70)."""

    exit_code = int(Exit.INTERNAL)


@dataclass
class Demo:
    """What the story's steps share: the run's folder, keys, processes and artifact server."""

    invoke: Callable[[Sequence[str]], int]  # runs one `fleetcd` command in-process; its exit code
    home: Path  # fleet/ (work tree), fleet.git/ (server), robots/, controller/, artifacts/
    gnupghome: Path
    processes: Processes
    artifacts: ArtifactServer
    kept: bool
    containers: ContainerWorld | None = None  # --docker: the registry and images the releases pin
    robots: list[Robot] = field(default_factory=list)
    step_no: int = 0

    @property
    def fleet(self) -> Path:
        return self.home / "fleet"

    @property
    def server(self) -> Path:
        return self.home / "fleet.git"

    @property
    def gpg(self) -> list[str]:
        return ["--gnupghome", str(self.gnupghome)]

    def step(self, title: str) -> None:
        self.step_no += 1
        click.secho(f"\n[{self.step_no}] {title}", bold=True)

    def run(self, args: Sequence[str], expect: Exit) -> None:
        """Run ``fleetcd ARGS`` as a person would type it; DemoFailed unless it exits ``expect``."""
        shown = [a.replace(f"{self.home}/", "") for a in args]
        click.secho(f"$ fleetcd {' '.join(shown)}", fg="cyan")
        code = self.invoke(list(args))
        if _interrupted.is_set():  # the command's own handler turned Ctrl-C into an exit code
            raise KeyboardInterrupt
        if code != expect:
            raise DemoFailed(f"`fleetcd {' '.join(args)}` exited {code}, expected {int(expect)}")

    def commit(self, message: str) -> None:
        commit_all(self.fleet, message, AUTHOR)
        click.echo(f"(committed: {message})")

    def merge(self) -> None:
        """Push main to the fleet's server: what merging the pull request does."""
        push(self.fleet / ".git", str(self.server), ["refs/heads/main:refs/heads/main"])
        click.echo("(pushed to main on the fleet's git server: merged)")

    def robot_home(self, robot: Robot) -> Path:
        return self.home / "robots" / robot.id

    def view(self) -> Fleetview:
        return Fleetview(
            self.server, self.robots, lambda r: self.robot_home(r) / "state" / "journal" / f"{APP}.json"
        )

    def check(self) -> None:
        """DemoFailed when the controller or an agent ended on its own, with its log's end."""
        for name, code in self.processes.exited().items():
            log = self.processes.logs[name]
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise DemoFailed(f"{name} exited {code} (log: {log})\n{tail}")

    def watch(self, done: Callable[[Snapshot], bool]) -> Snapshot:
        """The live table until ``done``; DemoFailed after PHASE_LIMIT_SECONDS."""
        try:
            return watch_until(self.view(), done, limit_seconds=PHASE_LIMIT_SECONDS, check=self.check)
        except TimeoutError as exc:
            where = self.home if self.kept else "the logs (run with --keep DIR to keep them)"
            raise DemoFailed(f"{exc}; see {where}") from exc


@contextlib.contextmanager
def demo_session(
    invoke: Callable[[Sequence[str]], int], keep: Path | None, docker: bool = False
) -> Iterator[Demo]:
    """One run for the story to use; it lives in ``keep`` (kept) or a temporary directory (removed)."""
    engine = require_docker_demo() if docker else None
    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise SetupError(f"{keep}: not empty; --keep needs a new or empty directory")
    home = (keep or Path(tempfile.mkdtemp(prefix="fleetcd-demo-"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    # Short: gpg-agent's sockets live in the home, and a socket path has a ~108-byte limit.
    gnupghome = Path(tempfile.mkdtemp(prefix="fleetcd-demo-gpg-"))
    processes = Processes(marker=uuid.uuid4().hex, root=home)
    artifacts: ArtifactServer | None = None
    containers: ContainerWorld | None = None
    try:
        with _marked(processes.marker), _signals_interrupt():
            artifacts = ArtifactServer(home / "artifacts")
            if engine is not None:
                containers = ContainerWorld(engine, home / "registry")
            yield Demo(
                invoke,
                home,
                gnupghome,
                processes,
                artifacts,
                kept=keep is not None,
                containers=containers,
            )
    except KeyboardInterrupt:
        click.echo("\ninterrupted: stopping the controller, the agents and their apps", err=True)
        raise
    finally:
        with _ignoring_interrupts():
            processes.stop_all()
            if containers is not None:  # after the agents: none of them may start an app again
                containers.close()
            if artifacts is not None:
                artifacts.close()
            _kill_gpg_agents(gnupghome)
            if keep is not None:
                sockets = shutil.ignore_patterns("S.*")
                shutil.copytree(gnupghome, home / "gnupg", ignore=sockets, dirs_exist_ok=True)
            shutil.rmtree(gnupghome, ignore_errors=True)
            if keep is None:
                shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def _marked(marker: str) -> Iterator[None]:
    """Mark this process's environment, so what it starts (gpg agents too) can be found and ended."""
    os.environ[MARKER_ENV] = marker
    try:
        yield
    finally:
        os.environ.pop(MARKER_ENV, None)


_interrupted = threading.Event()  # also seen after a command run in-process swallowed the interrupt


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    _interrupted.set()
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP end the demo through the cleanup."""
    _interrupted.clear()
    signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, _interrupt) for s in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _ignoring_interrupts() -> Iterator[None]:
    """A second Ctrl-C must not cut the cleanup short (it takes a few seconds at most)."""
    signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _kill_gpg_agents(gnupghome: Path) -> None:
    gpgconf = shutil.which("gpgconf")
    if gpgconf:
        argv = [gpgconf, "--homedir", str(gnupghome), "--kill", "all"]
        subprocess.run(argv, check=False, capture_output=True, timeout=30)
