"""Customer hooks as executables: the HookContext as JSON on stdin, the answer as the exit code.

Exit 0 means ok / handled, 3 means "not handled, let the executor do it"; any other code, a
timeout (the hook's whole process group is killed) or a binary that cannot start is a
:class:`~agent.errors.HookFailed` naming the hook, the exit code and the tail of stderr.
"""

from __future__ import annotations

from agent.errors import HookFailed
from agent.process import run_bounded
from fleetcd.models.agent import ExecHook

EXIT_OK = 0
EXIT_NOT_HANDLED = 3
STDERR_TAIL_BYTES = 2048


def run_exec_hook(hook: str, spec: ExecHook, payload: bytes) -> bool:
    """Run ``spec`` for ``hook`` with ``payload`` on stdin: True (exit 0) or False (exit 3)."""
    binary = spec.exec[0]
    try:
        done = run_bounded(
            spec.exec, timeout_seconds=spec.timeout_seconds, stdin=payload, cap_bytes=STDERR_TAIL_BYTES
        )
    except OSError as exc:
        raise HookFailed(hook, f"cannot run {binary}: {exc.strerror or exc}") from exc
    if done.timed_out:
        detail = f"{binary} timed out after {spec.timeout_seconds} s (killed)"
        raise HookFailed(hook, detail, stderr_tail=done.stderr_tail())
    if done.returncode == EXIT_OK:
        return True
    if done.returncode == EXIT_NOT_HANDLED:
        return False
    raise HookFailed(hook, f"{binary} exited", exit_code=done.returncode, stderr_tail=done.stderr_tail())
