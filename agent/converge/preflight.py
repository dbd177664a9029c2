"""The release's pre-flight steps, run in converge state *applying* before anything is installed.

Each :class:`~fleetcd.models.release.Step` is an argv run without a shell; its binary must be an
absolute path on the robot's ``exec_allowlist`` (the release is signed, but the robot decides what
may run on it). Exit 0 goes on; anything else — off the allowlist, cannot start, timed out, non-zero
exit — is :class:`~agent.errors.HookFailed` naming the step, an ApplyError: the deployment fails
and the running version stays.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.errors import HookFailed
from agent.process import refusal, run_bounded
from fleetcd.models.release import Step

STDERR_TAIL_CHARS = 400


def run_steps(steps: Sequence[Step], *, allowlist: Sequence[str]) -> None:
    """Run every step in order; raise HookFailed at the first that does not exit 0."""
    for step in steps:
        run_command(f"preflight {step.name}", step.exec, step.timeout_seconds, allowlist=allowlist)


def run_command(label: str, argv: Sequence[str], timeout_seconds: int, *, allowlist: Sequence[str]) -> None:
    """Run one step's argv (no shell) within its timeout; HookFailed named ``label`` unless it exits 0.

    Also how :mod:`agent.converge.migrate` runs migrations and their rollbacks.
    """
    why = refusal(argv, allowlist)
    if why is not None:
        raise HookFailed(label, f"refused: {why}")
    try:
        done = run_bounded(argv, timeout_seconds=timeout_seconds)
    except OSError as exc:
        raise HookFailed(label, f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    if done.timed_out:
        raise HookFailed(label, f"timed out after {timeout_seconds} s")
    if done.returncode != 0:
        tail = done.stderr_tail()[-STDERR_TAIL_CHARS:]
        raise HookFailed(label, f"{argv[0]} exited", exit_code=done.returncode, stderr_tail=tail)
