"""``fleetcd controller run`` as a process: what an operator or systemd sees over its lifetime.

The loop's policy is tested pass by pass elsewhere (tests/test_controller_runner_policy.py,
tests/test_controller_loop.py). Here the real command runs in its own process against a real bare
server, real git and gpg, and its metrics textfile (checked by promtool) is the window into it:
a server that goes away and comes back costs failed passes and then the loop applies again; a
commit that breaks main stalls every pass until a fix is merged, then the loop applies the fix;
SIGTERM and Ctrl-C end it with exit 0 and ``stopped on SIGTERM`` (at once between passes; after
the running pass's state commit lands during one; a second signal ends it by that signal at once),
and a controller started again on the same cache carries on from git alone.

The pass that is running when the signal comes is held at a write checkpoint, which the CLI does not
expose: there the loop runs in :func:`paused_main`, a process doing what ``controller run`` does
(:class:`controller.runner.SignalStop` around :func:`controller.runner.run_forever`).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.reconcile.settings import ControllerSettings
from controller.reconcile.source import Source
from controller.runner import SignalStop, run_forever
from controller.state.model import RolloutPhase, WavePhase
from tests.gpgkeys import KeyFactory
from tests.promtext import Key, check_metrics, samples, value
from tests.sim.world import ControllerWorld, make_world

ROOT = Path(__file__).resolve().parent.parent
FLEETCD = [sys.executable, "-c", "from controller.cli import main; main()"]
STOP_SECONDS = 60.0  # a signalled controller must be gone by then (idle or in one pass; a loaded machine)
IDLE_STOP_SECONDS = 2.0  # a controller waiting between passes stops at once
PATIENCE_SECONDS = 90.0  # the longest a condition on the metrics may take on a loaded machine
BROKEN = "devices/broken.yaml"


class Running:
    """One ``fleetcd controller run`` process, its metrics textfile and its standard error."""

    def __init__(self, world: ControllerWorld, root: Path, *, interval: int = 1, watch: bool = False) -> None:
        self.world = world
        self.textfile = root / "fleetcd.prom"
        self.stderr_path = root / "controller.err"
        self.cache = root / "run-cache"
        argv = ["controller", "run", "--repo", str(world.server), "--cache", str(self.cache)]
        argv += ["--gnupghome", str(world.settings.gnupghome), "--interval", str(interval)]
        argv += ["--metrics-file", str(self.textfile), *(["--watch"] if watch else [])]
        with self.stderr_path.open("w") as err:
            self.process = subprocess.Popen(
                [*FLEETCD, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True
            )

    def metrics(self) -> dict[Key, float]:
        try:
            return samples(self.textfile.read_text())
        except FileNotFoundError:
            return {}

    def count(self, result: str) -> float:
        found = self.metrics()
        return value(found, "fleetcd_reconciles_total", result=result) if found else 0.0

    def until(self, what: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + PATIENCE_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the controller ended ({self.process.returncode}): {self.err()}")
            if condition():
                return
            time.sleep(0.2)
        raise AssertionError(f"not within {PATIENCE_SECONDS} s: {what}\n{self.err()[-3000:]}")

    def stop(self, signum: signal.Signals) -> tuple[int, float]:
        """Send ``signum``; the exit status and how long it took to end."""
        sent = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(timeout=STOP_SECONDS)
        return code, time.monotonic() - sent

    def err(self) -> str:
        return self.stderr_path.read_text()

    def out(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.read()


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory) -> ControllerWorld:
    return make_world(tmp_path / "world", keys, name="process")


@pytest.fixture
def running(tmp_path: Path, world: ControllerWorld) -> Iterator[Running]:
    started = Running(world, tmp_path)
    try:
        yield started
    finally:
        if started.process.poll() is None:
            started.process.kill()
            started.process.wait(timeout=30)


def test_a_server_that_goes_away_costs_failed_passes_and_the_loop_applies_again_when_it_is_back(
    running: Running, world: ControllerWorld, promtool: str
) -> None:
    running.until("the first pass applied", lambda: running.count("applied") >= 1)
    with world.server_down():
        failed = running.count("failed")
        running.until("two passes failed", lambda: running.count("failed") >= failed + 2)
        down = running.metrics()
    check_metrics(promtool, running.textfile.read_text())
    assert value(down, "fleetcd_reconciles_total", result="stalled") == 0  # nothing blamed on content

    world.report_all(["stg-1"], "deployed")  # a change the controller can only see once it is back
    applied = running.count("applied")
    running.until("a pass applied after the server came back", lambda: running.count("applied") > applied)
    code, seconds = running.stop(signal.SIGTERM)

    assert code == 0, running.err()
    assert "retrying in" in running.err()  # logged as the environment's fault, with its backoff
    assert "Traceback" not in running.err()  # a missing server is no bug
    assert seconds < STOP_SECONDS


def test_a_commit_that_breaks_main_stalls_the_loop_until_a_fix_is_merged(
    running: Running, world: ControllerWorld
) -> None:
    running.until("the first pass applied", lambda: running.count("applied") >= 1)
    world.fleet.file(BROKEN, b"apiVersion: fleetcd.dev/v1\nkind: Device\nid: [not closed\n")
    world.merge("a robot file that is no YAML")
    running.until("a pass stalled", lambda: running.count("stalled") >= 1)
    idle = running.count("idle")
    running.until("two more passes ran", lambda: running.count("idle") + running.count("stalled") >= idle + 3)
    assert running.count("failed") == 0  # invalid content is neither retried as a failure nor a bug
    assert world.state().rollouts["nav"].phase is RolloutPhase.STALLED

    world.fleet.remove(BROKEN)
    world.merge("the robot file removed")
    applied = running.count("applied")
    running.until("the fix was applied", lambda: running.count("applied") > applied)
    code, _seconds = running.stop(signal.SIGTERM)

    assert code == 0, running.err()
    assert "STALLED" in running.out()
    assert world.state().rollouts["nav"].phase is RolloutPhase.PROGRESSING


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_between_passes_ends_the_controller_at_once_with_exit_0(
    tmp_path: Path, world: ControllerWorld, signum: signal.Signals
) -> None:
    running = Running(world, tmp_path, interval=600)  # sleeping for ten minutes after the first pass
    try:
        running.until("the first pass applied", lambda: running.count("applied") >= 1)
        time.sleep(0.5)  # past writing the textfile, into the wait
        code, seconds = running.stop(signum)
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(timeout=30)

    assert code == 0, running.err()
    assert seconds < IDLE_STOP_SECONDS
    assert running.err().splitlines()[-1] == f"stopped on {signum.name}"
    assert "Traceback" not in running.err()
    assert not list(running.textfile.parent.glob("*.prom.*")), "a temporary textfile was left behind"


def test_a_controller_started_again_on_the_same_cache_carries_on_from_git(
    tmp_path: Path, running: Running, world: ControllerWorld
) -> None:
    running.until("the first pass applied", lambda: running.count("applied") >= 1)
    running.stop(signal.SIGTERM)
    first = world.state()
    world.report_all(["stg-1"], "deployed")

    again = Running(world, tmp_path)
    try:
        again.until("the report was taken in", lambda: world.state().commit != first.commit)
    finally:
        again.stop(signal.SIGTERM)

    now = world.state()
    assert world.wave("staging") in (WavePhase.SOAKING, WavePhase.PASSED)  # stg-1's report counted
    log = b"".join(first.audit[path] for path in sorted(first.audit))
    assert b"".join(now.audit[path] for path in sorted(now.audit)).startswith(log)  # appended to, not redone


# --- a signal during a pass -------------------------------------------------------------------------


PAUSE_AT = "desired-written"  # the desired refs are pushed; the state commit is not made yet


def paused_main(argv: list[str]) -> None:
    """Subprocess entry: ``controller run``'s loop whose passes wait at :data:`PAUSE_AT` until
    ``go`` exists, noting in ``marks`` each arrival there and the stop request seen while waiting."""
    server, mirror, gnupghome, marks, go = argv

    def note(line: str) -> None:
        with Path(marks).open("a") as out:
            out.write(line + "\n")

    with SignalStop() as stop:

        def checkpoint(step: str) -> None:
            if step != PAUSE_AT:
                return
            note("paused")
            noted = False
            while not Path(go).exists():
                if stop.event.is_set() and not noted:
                    note("stopping")
                    noted = True
                time.sleep(0.05)

        settings = ControllerSettings(
            source=Source(server, Path(mirror)),
            gnupghome=Path(gnupghome),
            notify=False,
            checkpoint=checkpoint,
        )
        run_forever(settings, 1.0, stop=stop.event)
    print(f"stopped on {stop.signal_name}", file=sys.stderr)
    sys.exit(0)


class Paused:
    """A :func:`paused_main` process held in its first pass."""

    def __init__(self, world: ControllerWorld, root: Path) -> None:
        self.marks, self.go = root / "marks", root / "go"
        script = (
            "import sys; from tests.test_controller_run_process import paused_main; paused_main(sys.argv[1:])"
        )
        args = [str(world.server), str(root / "paused-cache"), str(world.settings.gnupghome)]
        self.process = subprocess.Popen(
            [sys.executable, "-c", script, *args, str(self.marks), str(self.go)],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.wait_for("paused")

    def lines(self) -> list[str]:
        return self.marks.read_text().splitlines() if self.marks.exists() else []

    def wait_for(self, mark: str) -> None:
        deadline = time.monotonic() + PATIENCE_SECONDS
        while mark not in self.lines():
            assert self.process.poll() is None, self.process.communicate()[1]
            assert time.monotonic() < deadline, f"no {mark!r} within {PATIENCE_SECONDS} s"
            time.sleep(0.05)

    def finish(self) -> tuple[int, str]:
        _out, err = self.process.communicate(timeout=STOP_SECONDS)
        return self.process.returncode, err


@pytest.fixture
def paused(tmp_path: Path, world: ControllerWorld) -> Iterator[Paused]:
    started = Paused(world, tmp_path)
    try:
        yield started
    finally:
        if started.process.poll() is None:
            started.process.kill()
            started.process.wait(timeout=30)


def test_sigterm_during_a_pass_lets_its_state_commit_land_then_exits_0(
    paused: Paused, world: ControllerWorld
) -> None:
    before = world.state().commit
    paused.process.send_signal(signal.SIGTERM)
    paused.wait_for("stopping")  # the handler ran; the pass is still held
    paused.go.touch()
    code, err = paused.finish()

    assert code == 0, err
    assert err.splitlines()[-1] == "stopped on SIGTERM"
    assert world.state().commit != before  # the held pass's state commit was pushed
    assert paused.lines() == ["paused", "stopping"]  # and no pass started after it


def test_a_second_sigterm_during_a_pass_ends_the_controller_at_once(
    paused: Paused, world: ControllerWorld
) -> None:
    before = world.state().commit
    paused.process.send_signal(signal.SIGTERM)
    paused.wait_for("stopping")
    sent = time.monotonic()
    paused.process.send_signal(signal.SIGTERM)
    code, _err = paused.finish()

    assert code == -signal.SIGTERM  # died by the signal: 143 in a shell, what systemd counts as clean
    assert time.monotonic() - sent < STOP_SECONDS
    assert world.state().commit == before  # the held pass never committed; the next controller redoes it
    assert paused.lines() == ["paused", "stopping"]
