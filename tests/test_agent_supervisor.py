"""The built-in supervisor with real processes: start, find again, stop, and never mistake a stranger.

The agent's own death is real too: a child process runs the supervisor and is kill -9'ed, and the
test process, as the restarted agent, must still find and stop the app.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import CorruptState
from agent.executors.base import RunState
from agent.executors.supervisor import Supervisor
from fleetcd.errors import ApplyError
from tests.apps import AppBehaviour, free_port, healthz, stop_all, wait_for_version, wait_until, write_app

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def supervisor(run_dir: Path) -> Iterator[Supervisor]:
    sup = Supervisor(run_dir)
    yield sup
    stop_all(Supervisor(run_dir))


def alive(pid: int) -> bool:
    """Exists and is not a zombie (the test's own view, independent of the supervisor)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def gone(pid: int, *, within_seconds: float = 10.0) -> bool:
    """SIGKILL is delivered asynchronously: give the kernel a bounded moment to finish the job."""
    deadline = time.monotonic() + within_seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def start_web(
    sup: Supervisor, tmp_path: Path, version: str = "1.0.0", behaviour: AppBehaviour = "healthy"
) -> int:
    port = free_port()
    folder = write_app(tmp_path / f"web-{version}-{behaviour}", version, behaviour)
    sup.start("web", version, [sys.executable, "app.py"], folder, {"PORT": str(port)})
    return port


def test_started_app_serves_and_reads_running_until_stopped(supervisor: Supervisor, tmp_path: Path) -> None:
    port = start_web(supervisor, tmp_path)
    assert wait_for_version(port) == "1.0.0"
    assert supervisor.state("web", "1.0.0") is RunState.RUNNING
    assert supervisor.state("web", "2.0.0") is RunState.MISSING
    assert supervisor.running_version("web") == "1.0.0"
    assert "listening on" in supervisor.log_tail("web")

    supervisor.stop("web")

    assert supervisor.state("web", "1.0.0") is RunState.EXITED
    assert supervisor.running_version("web") is None
    assert healthz(port) is None


def test_app_gets_only_the_environment_it_is_given(supervisor: Supervisor, tmp_path: Path) -> None:
    folder = tmp_path / "envdump"
    folder.mkdir()
    script = "import json, os; open('env.json', 'w').write(json.dumps(dict(os.environ)))"
    supervisor.start("dump", "1.0.0", [sys.executable, "-c", script], folder, {"ONLY": "this"})
    assert wait_until(lambda: (folder / "env.json").is_file() and supervisor.running_version("dump") is None)
    env = json.loads((folder / "env.json").read_text())
    assert env["ONLY"] == "this"
    assert env["FLEETCD_APP"] == "dump"
    assert env["FLEETCD_SUPERVISOR"] == str(supervisor.run_dir.resolve())
    assert "PYTEST_CURRENT_TEST" not in env


def test_app_outlives_a_killed_agent_and_a_restarted_one_stops_it(run_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    folder = write_app(tmp_path / "web", "1.0.0")
    agent_script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from agent.executors.supervisor import Supervisor
        run_dir, folder, port = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
        pid = Supervisor(run_dir).start("web", "1.0.0", [sys.executable, "app.py"], folder, {"PORT": port})
        print(pid, flush=True)
        sys.stdin.read()  # an agent that lives until it is killed
        """
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", agent_script, str(run_dir), str(folder), str(port)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert agent.stdout is not None
        app_pid = int(agent.stdout.readline())
        assert wait_for_version(port) == "1.0.0"

        agent.send_signal(signal.SIGKILL)
        agent.wait()

        assert alive(app_pid)
        assert wait_for_version(port) == "1.0.0"
        restarted = Supervisor(run_dir)
        assert restarted.state("web", "1.0.0") is RunState.RUNNING
        restarted.stop("web")
        assert restarted.state("web", "1.0.0") is RunState.EXITED
        assert not alive(app_pid)
        assert healthz(port) is None
    finally:
        agent.kill()
        agent.wait()
        stop_all(Supervisor(run_dir))


def test_orphan_started_just_before_the_agent_died_is_stopped_by_the_next_start(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    # The agent died between the fork and the pidfile write: the app runs, nobody recorded it.
    port = start_web(Supervisor(supervisor.run_dir), tmp_path)
    assert wait_for_version(port) == "1.0.0"
    orphan = json.loads(supervisor.pidfile("web").read_text())["pid"]
    supervisor.pidfile("web").unlink()

    port2 = start_web(supervisor, tmp_path, "1.1.0")

    assert not alive(orphan)
    assert wait_for_version(port2) == "1.1.0"


def test_crash_looping_app_reads_exited_and_leaves_its_reason_in_the_log(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    start_web(supervisor, tmp_path, behaviour="crash")
    assert wait_until(lambda: supervisor.state("web", "1.0.0") is RunState.EXITED)
    assert "crashing on purpose" in supervisor.log_tail("web")


def test_start_of_the_running_version_is_a_no_op_and_another_version_replaces_it(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    port = free_port()
    folder = write_app(tmp_path / "web", "1.0.0")
    argv, env = [sys.executable, "app.py"], {"PORT": str(port)}
    first = supervisor.start("web", "1.0.0", argv, folder, env)
    assert wait_for_version(port) == "1.0.0"

    assert supervisor.start("web", "1.0.0", argv, folder, env) == first  # replayed after a crash

    new_folder = write_app(tmp_path / "web-2", "2.0.0")
    second = supervisor.start("web", "2.0.0", argv, new_folder, env)
    assert second != first
    assert not alive(first)
    assert wait_for_version(port, "2.0.0") == "2.0.0"


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param({"start_ticks": 1}, id="reused-pid-other-start-time"),
        pytest.param({"boot_id": "00000000-0000-0000-0000-000000000000"}, id="pidfile-from-another-boot"),
    ],
)
def test_a_stranger_behind_a_recorded_pid_is_not_running_and_not_signalled(
    supervisor: Supervisor, tmp_path: Path, forged: dict[str, object]
) -> None:
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        port = start_web(supervisor, tmp_path)
        assert wait_for_version(port) == "1.0.0"
        supervisor.stop("web")
        record = json.loads(supervisor.pidfile("web").read_text())
        record["pid"] = stranger.pid
        record["start_ticks"] = int(
            Path(f"/proc/{stranger.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        )
        record.update(forged)
        supervisor.pidfile("web").write_text(json.dumps(record))

        assert supervisor.state("web", "1.0.0") is RunState.EXITED
        supervisor.stop("web", timeout_s=0.5)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_zombie_is_not_running(supervisor: Supervisor, tmp_path: Path) -> None:
    # A parent that never reaps its child: the child's pid stays, as a zombie, with its start time.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            # The Popen object stays referenced and is never polled, so nothing reaps the child.
            "import subprocess, time; child = subprocess.Popen(['true']); print(child.pid, flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        zombie = int(parent.stdout.readline())
        assert wait_until(lambda: not alive(zombie))
        port = start_web(supervisor, tmp_path)
        assert wait_for_version(port) == "1.0.0"
        supervisor.stop("web")
        record = json.loads(supervisor.pidfile("web").read_text())
        stat = Path(f"/proc/{zombie}/stat").read_text()
        assert stat.rsplit(")", 1)[1].split()[0] == "Z"
        record["pid"], record["start_ticks"] = zombie, int(stat.rsplit(")", 1)[1].split()[19])
        supervisor.pidfile("web").write_text(json.dumps(record))

        assert supervisor.state("web", "1.0.0") is RunState.EXITED
    finally:
        parent.kill()
        parent.wait()


def test_stop_escalates_to_sigkill_for_an_app_ignoring_sigterm(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
        "time.sleep(600)"
    )
    pid = supervisor.start("stubborn", "1.0.0", [sys.executable, "-c", script], tmp_path, {})
    assert wait_until(lambda: "up" in supervisor.log_tail("stubborn"))

    supervisor.stop("stubborn", timeout_s=0.5)

    assert supervisor.state("stubborn", "1.0.0") is RunState.EXITED
    assert not alive(pid)


def test_stop_takes_down_the_helpers_the_app_forked(supervisor: Supervisor, tmp_path: Path) -> None:
    script = (
        "import subprocess, time; "
        "helper = subprocess.Popen(['sleep', '600']); "
        "open('helper.pid', 'w').write(str(helper.pid)); time.sleep(600)"
    )
    supervisor.start("forker", "1.0.0", [sys.executable, "-c", script], tmp_path, {})
    assert wait_until(lambda: (tmp_path / "helper.pid").is_file() and (tmp_path / "helper.pid").read_text())
    helper = int((tmp_path / "helper.pid").read_text())
    assert alive(helper)

    supervisor.stop("forker")

    assert wait_until(lambda: not alive(helper))


def test_log_is_capped_keeping_the_latest_output(run_dir: Path, tmp_path: Path) -> None:
    supervisor = Supervisor(run_dir, log_cap_bytes=4096)
    script = "import time\nfor i in range(2000):\n    print(f'line {i:05d}', flush=True)\ntime.sleep(600)"
    try:
        supervisor.start("chatty", "1.0.0", [sys.executable, "-c", script], tmp_path, {})
        log = supervisor.log_path("chatty")
        assert wait_until(lambda: "line 01999" in log.read_text())
        assert log.stat().st_size > 4096

        assert supervisor.state("chatty", "1.0.0") is RunState.RUNNING

        rotated = log.with_name(log.name + ".1")
        assert log.stat().st_size <= 4096
        assert rotated.stat().st_size <= 4096
        assert rotated.read_text().endswith("line 01999\n")
    finally:
        stop_all(supervisor)


@pytest.mark.parametrize(
    "argv",
    [pytest.param(["/nonexistent/bin/app"], id="missing-executable"), pytest.param([], id="empty-command")],
)
def test_an_unstartable_command_is_an_apply_error(
    supervisor: Supervisor, tmp_path: Path, argv: list[str]
) -> None:
    with pytest.raises(ApplyError, match=r"web 1\.0\.0"):
        supervisor.start("web", "1.0.0", argv, tmp_path, {})
    assert supervisor.running_version("web") is None


def test_a_corrupt_pidfile_fails_closed(supervisor: Supervisor) -> None:
    supervisor.run_dir.mkdir(parents=True)
    supervisor.pidfile("web").write_text('{"pid": 1}')
    with pytest.raises(CorruptState, match="not a supervisor pidfile"):
        supervisor.state("web", "1.0.0")
    os.unlink(supervisor.pidfile("web"))
