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
        hook = f"preflight {step.name}"
        why = refusal(step.exec, allowlist)
        if why is not None:
            raise HookFailed(hook, f"refused: {why}")
        try:
            done = run_bounded(step.exec, timeout_seconds=step.timeout_seconds)
        except OSError as exc:
            raise HookFailed(hook, f"cannot run {step.exec[0]}: {exc.strerror or exc}") from exc
        if done.timed_out:
            raise HookFailed(hook, f"timed out after {step.timeout_seconds} s")
        if done.returncode != 0:
            tail = done.stderr_tail()[-STDERR_TAIL_CHARS:]
            raise HookFailed(hook, f"{step.exec[0]} exited", exit_code=done.returncode, stderr_tail=tail)
