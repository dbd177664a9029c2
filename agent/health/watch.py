"""The watch window after a switch: the new version must stay up and every probe must pass.

``converge`` calls :func:`watch` in state *watching*; a healthy verdict commits the version, any
other rolls it back. The rules, for ``health.watch_seconds`` (30 s by default) from the call:

* the executor's :class:`~agent.executors.base.RunState` is checked every second; anything but
  ``RUNNING`` fails at once (reason ``exited`` or ``app_missing``);
* each probe starts after its ``initial_delay_seconds`` and runs every ``interval_seconds`` for the
  whole window; ``attempts`` failures in a row fail at once (reason ``probe_failed``, naming it);
* the verdict is healthy only when the window is over, the app is still running, and every probe
  has passed at least once. A probe that has not passed yet when the window ends keeps its
  remaining attempts (the window is a minimum, never a reason to skip a probe).

One thread, no background work: probes run one after another between state checks, so a verdict
leaves nothing behind (no probe still poking a rolled-back app). Waiting goes through the
:class:`~agent.health.clock.Clock`; probe and process timeouts are always real time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from agent.errors import HealthFailed
from agent.executors.base import RunState
from agent.health.clock import SYSTEM_CLOCK, Clock
from agent.health.probes import Probe, ProbeResult, attempt
from fleetcd.models.release import Health
from fleetcd.reasons import Reason

STATE_CHECK_SECONDS = 1.0  # how often the app must be seen running


@dataclass(frozen=True)
class HealthVerdict:
    """What the watch window concluded; ``reason`` is a :class:`~fleetcd.reasons.Reason` value."""

    healthy: bool
    reason: str
    probe_results: list[ProbeResult]
    detail: str = ""
    probe: str | None = None  # the probe that failed, when one did

    def raise_if_unhealthy(self) -> None:
        if not self.healthy:
            raise HealthFailed(self.reason, self.detail, probe=self.probe)


@dataclass
class _Schedule:
    probe: Probe
    next_at: float
    tries: int = 0
    failures_in_a_row: int = 0
    passed: bool = False
    last: ProbeResult | None = field(default=None)


def watch(
    target_app: str,
    version: str,
    health: Health,
    executor_state: Callable[[], RunState],
    *,
    allowlist: Sequence[str],
    clock: Clock = SYSTEM_CLOCK,
    window_seconds: int | None = None,
    seconds_left: Callable[[float], None] | None = None,
) -> HealthVerdict:
    """Watch ``target_app`` at ``version`` through its window; see the module docstring for the rules.

    ``seconds_left`` is told what remains of the window (0 once it is over) before every wait; it
    must return at once and never raise (agent.report.progress listens).
    """
    window = health.watch_seconds if window_seconds is None else window_seconds
    start = clock.now()
    end = start + window
    schedules = [_Schedule(p, start + p.initial_delay_seconds) for p in health.probes]
    who = f"{target_app} {version}"
    next_state_check = start
    while True:
        now = clock.now()
        in_window = now < end
        if now >= next_state_check or not in_window:
            state = executor_state()
            if state is not RunState.RUNNING:
                return _stopped(who, state, now - start, window, schedules)
            next_state_check = now + STATE_CHECK_SECONDS
        for item in schedules:
            if item.next_at > clock.now() or (item.passed and not in_window):
                continue
            result = _try(item, allowlist, clock)
            if result.ok:
                continue
            if result.permanent or item.failures_in_a_row >= item.probe.attempts:
                # An app that died fails its probes too; report the cause, not the symptom.
                state = executor_state()
                if state is not RunState.RUNNING:
                    return _stopped(who, state, clock.now() - start, window, schedules)
                return _probe_failed(who, item, schedules)
        if not in_window and all(item.passed for item in schedules):
            return HealthVerdict(
                True,
                Reason.HEALTHY.value,
                _results(schedules),
                f"{who} stayed up for {window} s and passed {len(schedules)} probe(s)",
            )
        wakes = [next_state_check] + [item.next_at for item in schedules if in_window or not item.passed]
        if in_window:
            wakes.append(end)
        if seconds_left is not None:
            seconds_left(max(0.0, end - clock.now()))
        clock.sleep(max(0.0, min(wakes) - clock.now()))


def _try(item: _Schedule, allowlist: Sequence[str], clock: Clock) -> ProbeResult:
    item.tries += 1
    result = replace(attempt(item.probe, allowlist=allowlist), attempts=item.tries)
    item.last = result
    item.next_at = clock.now() + item.probe.interval_seconds
    if result.ok:
        item.passed, item.failures_in_a_row = True, 0
    else:
        item.failures_in_a_row += 1
    return result


def _results(schedules: list[_Schedule]) -> list[ProbeResult]:
    return [item.last for item in schedules if item.last is not None]


def _stopped(
    who: str, state: RunState, elapsed: float, window: int, schedules: list[_Schedule]
) -> HealthVerdict:
    reason = Reason.APP_MISSING if state is RunState.MISSING else Reason.APP_EXITED
    detail = f"{who} is {state.value} {elapsed:.1f} s into its {window} s watch window"
    return HealthVerdict(False, reason.value, _results(schedules), detail)


def _probe_failed(who: str, item: _Schedule, schedules: list[_Schedule]) -> HealthVerdict:
    assert item.last is not None
    times = item.failures_in_a_row
    detail = f"{who}: probe {item.probe.name!r} failed {times} time(s) in a row: {item.last.detail}"
    return HealthVerdict(False, Reason.PROBE_FAILED.value, _results(schedules), detail, item.probe.name)
