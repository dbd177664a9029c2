"""Health probes — exec, http and file — one attempt at a time, or retried as the release says.

The probes come from the signed release (``health.probes``, ``rollback.checks``); the robot's
``exec_allowlist`` decides which binaries an exec probe may run. A failed probe is a
:class:`ProbeResult`, never an exception: the watch window (:mod:`agent.health.watch`) turns
results into a verdict. A refusal that no retry can cure (a binary off the allowlist, a relative
file path) is marked ``permanent`` so nobody waits out the remaining attempts for it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from agent.health.clock import SYSTEM_CLOCK, Clock
from agent.health.http import get_status
from agent.process import refusal, run_bounded
from fleetcd.errors import TransportError
from fleetcd.models.release import ExecProbe, FileProbe, HttpProbe

Probe = ExecProbe | HttpProbe | FileProbe

DETAIL_MAX_CHARS = 512  # a probe's output tail in reports and errors


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of a probe: ``detail`` says what was seen (exit code and output tail, status)."""

    probe: str
    ok: bool
    detail: str
    attempts: int = 1
    permanent: bool = False  # no retry can change it (e.g. the binary is not allowlisted)


def attempt(probe: Probe, *, allowlist: Sequence[str]) -> ProbeResult:
    """Try ``probe`` once, now."""
    if isinstance(probe, ExecProbe):
        return _exec(probe, allowlist)
    if isinstance(probe, HttpProbe):
        return _http(probe)
    return _file(probe)


def run_probe(probe: Probe, *, allowlist: Sequence[str], clock: Clock = SYSTEM_CLOCK) -> ProbeResult:
    """Wait ``initial_delay_seconds``, then try up to ``attempts`` times, ``interval_seconds`` apart."""
    if probe.initial_delay_seconds:
        clock.sleep(probe.initial_delay_seconds)
    for number in range(1, probe.attempts + 1):
        result = replace(attempt(probe, allowlist=allowlist), attempts=number)
        if result.ok or result.permanent or number == probe.attempts:
            return result
        clock.sleep(probe.interval_seconds)
    raise AssertionError("unreachable: attempts >= 1")


def _exec(probe: ExecProbe, allowlist: Sequence[str]) -> ProbeResult:
    why = refusal(probe.argv, allowlist)
    if why is not None:
        return ProbeResult(probe.name, False, f"refused: {why}", permanent=True)
    try:
        done = run_bounded(probe.argv, timeout_seconds=probe.timeout_seconds)
    except OSError as exc:
        return ProbeResult(probe.name, False, f"cannot run {probe.argv[0]}: {exc.strerror or exc}")
    output = _clip(done.stderr_tail() or done.stdout_tail())
    if done.timed_out:
        return ProbeResult(probe.name, False, f"{probe.argv[0]} timed out after {probe.timeout_seconds} s")
    detail = f"{probe.argv[0]} exited {done.returncode}" + (f": {output}" if output else "")
    return ProbeResult(probe.name, done.returncode == 0, detail)


def _http(probe: HttpProbe) -> ProbeResult:
    try:
        status = get_status(probe.url, timeout_seconds=probe.timeout_seconds)
    except TransportError as exc:
        return ProbeResult(probe.name, False, _clip(str(exc)))
    ok = status == probe.expect_status
    return ProbeResult(probe.name, ok, f"GET {probe.url}: status {status}, expected {probe.expect_status}")


def _file(probe: FileProbe) -> ProbeResult:
    path = Path(probe.path)
    if not path.is_absolute():
        return ProbeResult(probe.name, False, f"{probe.path!r} is not an absolute path", permanent=True)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return ProbeResult(probe.name, False, f"{probe.path} does not exist")
    except OSError as exc:
        return ProbeResult(probe.name, False, f"{probe.path}: {exc.strerror or exc}")
    if probe.max_age_seconds is None:
        return ProbeResult(probe.name, True, f"{probe.path} exists")
    # Wall-clock age (mtimes are wall clock). A clock stepped back makes files look fresh, never
    # stale, so a probe does not fail a healthy app because NTP corrected the time.
    age = time.time() - mtime
    ok = age <= probe.max_age_seconds
    return ProbeResult(
        probe.name, ok, f"{probe.path} was modified {max(age, 0):.0f} s ago (max {probe.max_age_seconds} s)"
    )


def _clip(text: str) -> str:
    return text if len(text) <= DETAIL_MAX_CHARS else "…" + text[-DETAIL_MAX_CHARS:]
