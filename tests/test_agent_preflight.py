"""A release's pre-flight steps on the robot, run for real: what runs, what is refused, what a failure says.

A release is signed, but the robot decides what may run on it (``exec_allowlist`` in agent.yaml).
Each case checks the outcome a user relies on: a refused step never starts (its side effect is
absent), steps stop at the first failure, a hung step and everything it spawned is killed at its
timeout, and the :class:`~agent.errors.HookFailed` names the step, its exit code and stderr's tail.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.converge.preflight import STDERR_TAIL_CHARS, run_command, run_steps
from agent.errors import HookFailed
from fleetcd.errors import ApplyError
from fleetcd.models.release import Step

SH = "/bin/sh"


def step(name: str, script: str, timeout: int = 30) -> Step:
    return Step(name=name, exec=[SH, "-c", script], timeout_seconds=timeout)


def test_steps_run_in_order_and_all_pass(tmp_path: Path) -> None:
    log = tmp_path / "log"
    run_steps(
        [step("first", f"echo one >> {log}"), step("second", f"echo two >> {log}")],
        allowlist=[SH],
    )
    assert log.read_text().split() == ["one", "two"]


def test_the_first_failing_step_stops_the_rest_and_is_named(tmp_path: Path) -> None:
    first, last = tmp_path / "first", tmp_path / "last"
    with pytest.raises(HookFailed) as caught:
        run_steps(
            [
                step("prepare", f"touch {first}"),
                step("check-disk", "echo 'disk /data 98% full' >&2; exit 7"),
                step("never", f"touch {last}"),
            ],
            allowlist=[SH],
        )
    assert first.exists() and not last.exists()
    failed = caught.value
    assert failed.hook == "preflight check-disk"
    assert failed.exit_code == 7
    assert "98% full" in failed.stderr_tail
    assert isinstance(failed, ApplyError)  # the deployment fails; the running version stays


@pytest.mark.parametrize(
    ("argv0", "allowlist"),
    [
        ("sh", ["sh", SH]),  # relative: PATH lookup would pick whatever is first on PATH
        (SH, []),  # absolute but not listed
        ("/bin/../bin/sh", [SH]),  # the same binary by another spelling: listed verbatim or not at all
        ("/tmp/../bin/sh", ["/tmp/../bin/sh/.."]),
        ("", [""]),
    ],
    ids=["relative", "not-listed", "dot-dot-spelling", "dot-dot-listed-differently", "empty"],
)
def test_a_binary_off_the_allowlist_is_refused_and_never_started(
    tmp_path: Path, argv0: str, allowlist: list[str]
) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(HookFailed) as caught:
        run_command("preflight probe", [argv0, "-c", f"touch {marker}"], 30, allowlist=allowlist)
    assert not marker.exists()
    assert caught.value.hook == "preflight probe"
    assert caught.value.detail.startswith("refused")
    assert caught.value.exit_code is None


def test_a_listed_binary_that_does_not_exist_fails_the_step_not_the_agent(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-tool")
    with pytest.raises(HookFailed) as caught:
        run_steps([Step(name="tool", exec=[missing])], allowlist=[missing])
    assert caught.value.hook == "preflight tool"
    assert missing in caught.value.detail and caught.value.exit_code is None


def test_a_listed_file_that_is_not_executable_fails_the_step(tmp_path: Path) -> None:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    with pytest.raises(HookFailed) as caught:
        run_steps([Step(name="check", exec=[str(script)])], allowlist=[str(script)])
    assert str(script) in caught.value.detail


def test_a_hung_step_is_killed_at_its_timeout_with_everything_it_spawned(tmp_path: Path) -> None:
    late = tmp_path / "late"
    started = time.monotonic()
    with pytest.raises(HookFailed) as caught:
        run_steps([step("hang", f"(sleep 1.5; touch {late}) & exec sleep 60", timeout=1)], allowlist=[SH])
    assert time.monotonic() - started < 10
    assert "timed out after 1 s" in caught.value.detail
    time.sleep(1.5)  # the child would have written by now had it survived its group's kill
    assert not late.exists()


def test_a_step_flooding_its_output_is_bounded_and_still_timed_out() -> None:
    started = time.monotonic()
    with pytest.raises(HookFailed) as caught:
        run_steps([step("flood", "exec /usr/bin/yes", timeout=1)], allowlist=[SH])
    assert time.monotonic() - started < 10
    assert "timed out" in caught.value.detail


def test_only_the_tail_of_a_long_stderr_is_kept_and_it_is_the_end() -> None:
    script = "i=0; while [ $i -lt 300 ]; do echo line-$i >&2; i=$((i+1)); done; exit 3"
    with pytest.raises(HookFailed) as caught:
        run_steps([step("noisy", script)], allowlist=[SH])
    tail = caught.value.stderr_tail
    assert len(tail) <= STDERR_TAIL_CHARS
    assert "line-299" in tail and "line-0\n" not in tail
    assert caught.value.exit_code == 3


def test_a_step_killed_by_a_signal_is_a_failure_not_a_success() -> None:
    with pytest.raises(HookFailed) as caught:
        run_steps([step("self-kill", "kill -9 $$")], allowlist=[SH])
    assert caught.value.exit_code is not None and caught.value.exit_code != 0


def test_a_step_gets_no_stdin_and_does_not_wait_for_one() -> None:
    # `cat` with no input: it must see EOF at once, not hang until the timeout
    started = time.monotonic()
    run_steps([step("reads-stdin", "cat >/dev/null", timeout=20)], allowlist=[SH])
    assert time.monotonic() - started < 10


def test_no_steps_is_nothing_to_do() -> None:
    run_steps([], allowlist=[])
