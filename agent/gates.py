"""Robot-state gates ("docked", "no active mission"): may this robot install now?

A release (``gates:``) or rollout names gates; the robot defines them in agent.yaml
(``gates.checks``) as a command (exit 0 = open, binary on ``exec_allowlist``) or a file its own
software maintains (present = open). ``converge`` checks them before install:

* all open → go on;
* one closed → :class:`~agent.errors.GateClosed` (gate + reason): defer, keep running the current
  version, report the reason, check again after ``gates.retry_seconds`` (Mender's retry-later);
* closed for longer than ``gates.max_deferral_seconds`` → :class:`~agent.errors.GateTimedOut`,
  an ApplyError: the deployment fails.

Fail closed: a gate the robot does not define, a command off the allowlist, one that cannot start
or times out all count as closed, each with a reason saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from agent.errors import GateClosed, GateTimedOut
from agent.process import refusal, run_bounded
from fleetcd.models.agent import ExecGate, FileGate, GateSettings

REASON_MAX_CHARS = 512


def check_gates(names: Sequence[str], settings: GateSettings, *, allowlist: Sequence[str]) -> None:
    """Return when every gate in ``names`` is open; raise GateClosed for the first closed one."""
    for name in dict.fromkeys(names):  # each once, in the order named
        why = closed_reason(name, settings, allowlist=allowlist)
        if why is not None:
            raise GateClosed(name, why)


def closed_reason(name: str, settings: GateSettings, *, allowlist: Sequence[str]) -> str | None:
    """Why gate ``name`` is closed right now; None when it is open."""
    check = settings.checks.get(name)
    if check is None:
        return f"gate {name!r} is not defined in agent.yaml (gates.checks)"
    if isinstance(check, FileGate):
        return None if Path(check.file).exists() else f"{check.file} does not exist"
    return _exec_closed(check, allowlist)


def deferral_expired(first_deferred_at: datetime, now: datetime, settings: GateSettings) -> bool:
    """True once an install has waited ``max_deferral_seconds`` for its gates.

    A clock stepped back (``now`` before the first deferral) never expires a deferral: waiting
    longer keeps the current version running, which is the safe side.
    """
    return now - first_deferred_at >= timedelta(seconds=settings.max_deferral_seconds)


def enforce_gates(
    names: Sequence[str],
    settings: GateSettings,
    *,
    allowlist: Sequence[str],
    first_deferred_at: datetime | None,
    now: datetime,
) -> None:
    """:func:`check_gates`, turning a GateClosed into GateTimedOut once the deferral has expired.

    ``first_deferred_at`` is when this deployment was first deferred (None: not yet); the caller
    records ``now`` there on the first GateClosed.
    """
    try:
        check_gates(names, settings, allowlist=allowlist)
    except GateClosed as closed:
        if first_deferred_at is not None and deferral_expired(first_deferred_at, now, settings):
            raise GateTimedOut(closed.gate, closed.reason, settings.max_deferral_seconds) from closed
        raise


def _exec_closed(check: ExecGate, allowlist: Sequence[str]) -> str | None:
    why = refusal(check.exec, allowlist)
    if why is not None:
        return f"refused: {why}"
    binary = check.exec[0]
    try:
        done = run_bounded(check.exec, timeout_seconds=check.timeout_seconds)
    except OSError as exc:
        return f"cannot run {binary}: {exc.strerror or exc}"
    if done.timed_out:
        return f"{binary} timed out after {check.timeout_seconds} s"
    if done.returncode == 0:
        return None
    output = done.stderr_tail() or done.stdout_tail()
    reason = f"{binary} exited {done.returncode}" + (f": {output}" if output else "")
    return reason if len(reason) <= REASON_MAX_CHARS else reason[:REASON_MAX_CHARS] + "…"
