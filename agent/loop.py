"""The agent's cycle: sync → verify → converge each app → report, once (:func:`run_once`) or forever.

One cycle is a fixed list of steps and the report is always built and queued at the end, whatever
failed before it (Flux's "status is always written"): an offline robot still records what it runs,
a rejected bundle still shows up as ``last_error``. The report is pushed when
:func:`agent.report.cadence.push_due` says so (it says something new, or a heartbeat is due); a
push that fails stays in the outbox.

:func:`run_forever` sleeps between cycles with :class:`agent.sync.Backoff` (a cycle that hit a
TransportError backs off exponentially, others wait the poll interval, both with jitter), tells
systemd READY/STATUS through :mod:`agent.sdnotify`, and stops between cycles on SIGTERM or when
``stop`` is set. Watchdog pings come from :class:`agent.liveness.Liveness`: a thread pings while the
loop keeps within the budget its current step declared (a long download or watch is not a hang;
a step stuck past its budget is), and every phase of a cycle and every journal write is a beat.
A kill -9 at any point is safe: the journals say where each app was.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from agent import sdnotify
from agent.converge.apply import AppOutcome, converge_app
from agent.converge.configs import check_drift, load_ledger
from agent.converge.context import ConvergeContext
from agent.converge.drift import check_runtime_drift
from agent.converge.repair import repair_app_state, repair_files
from agent.converge.requires import converge_order, required_apps
from agent.errors import CorruptState, StateDirUnwritable, StateRepaired
from agent.executors import ExecutorContext, make_executor
from agent.executors.base import Executor
from agent.health.clock import SYSTEM_CLOCK, Clock
from agent.hooks import Hooks, load_hooks
from agent.liveness import Liveness
from agent.paths import AgentPaths, agent_paths
from agent.report.cadence import PushState, digest, load_push_state, push_due, save_push_state
from agent.report.metrics import CycleFacts, write_metrics
from agent.report.outbox import Outbox
from agent.report.progress import ProgressReporter
from agent.report.push import push_status
from agent.report.status import load_status, status_report
from agent.state.atomic import write_atomic
from agent.state.journal import Journal
from agent.state.migrations import Ledger
from agent.sync.accept import Desired, load_desired
from agent.sync.backoff import Backoff
from agent.trustcheck import load_trust_state
from fleetcd.compat import UTC
from fleetcd.desired.bundle import canonical_bytes
from fleetcd.errors import TransportError
from fleetcd.models.agent import AgentConfig
from fleetcd.reports import Progress, RuntimeDrift, StatusReport

log = logging.getLogger(__name__)
T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


def _no_checkpoint(_name: str) -> None:
    pass


@dataclass(frozen=True)
class Runtime:
    """The outside world of a cycle, with real defaults; tests pass clocks, executors, checkpoints."""

    now: Callable[[], datetime] = utc_now
    clock: Clock = SYSTEM_CLOCK  # the health watch's waits
    checkpoint: Callable[[str], None] = _no_checkpoint  # called around every journal write
    environ: Mapping[str, str] | None = None  # for $STATE_DIRECTORY; None: os.environ
    executor: Executor | None = None  # None: agent.yaml's executor
    hooks: Hooks | None = None  # None: agent.yaml's hooks
    liveness: Liveness | None = None  # the watchdog's view of progress; None: no watchdog


@dataclass(frozen=True)
class CycleResult:
    """What one cycle did."""

    apps: dict[str, AppOutcome]
    report: StatusReport | None
    pushed: bool
    errors: list[Exception] = field(default_factory=list)
    stale: bool = False
    serial: int | None = None
    retry_in_seconds: float | None = None  # a closed gate wants a look sooner than the poll interval

    @property
    def error(self) -> Exception | None:
        """The first error of the cycle (sync, verify, a step, the push), if any."""
        return self.errors[0] if self.errors else None

    @property
    def transient(self) -> bool:
        """The network let the cycle down: the next one comes after a backoff."""
        return any(isinstance(e, TransportError) for e in self.errors)


def run_once(
    config: AgentConfig, now: datetime | None = None, *, runtime: Runtime | None = None
) -> CycleResult:
    """One whole cycle; never raises for what a cycle can meet (see :attr:`CycleResult.errors`)."""
    rt = runtime or Runtime()
    liveness = rt.liveness or Liveness.disabled()
    clock_now: Callable[[], datetime] = rt.now if now is None else (lambda: now)
    try:
        paths = agent_paths(config, rt.environ).create()
    except StateDirUnwritable as exc:  # nothing could be journaled or reported: do nothing at all
        log.error("%s", exc)
        return CycleResult({}, None, False, [exc])
    started = clock_now()
    errors: list[Exception] = _repair(lambda: repair_files(paths, started, config))  # corrupt state files
    # A fetch or push stalls at most remote.timeout_seconds per try; gpg and git work come on top.
    network = float(config.remote.timeout_seconds) + liveness.settings.default_step_seconds
    try:
        with liveness.step("sync", network):
            desired = load_desired(config, paths, started)
    except Exception as exc:  # corrupt trust state, gpg missing: nothing can be trusted this cycle
        log.error("desired state unavailable: %s", exc)
        desired = Desired(errors=[exc])
    errors.extend(desired.errors)

    executor: Executor | None = None
    outcomes: dict[str, AppOutcome] = {}
    runtime_drift: list[RuntimeDrift] = []
    progress_seq = 0
    try:
        executor = rt.executor or make_executor(
            config.executor, ExecutorContext(paths.apps_dir, paths.downloads_dir), config
        )
        hooks = rt.hooks or load_hooks(config.hooks)
    except Exception as exc:
        errors.append(exc)
    else:
        errors.extend(_repair(lambda: repair_app_state(paths, executor, desired, started)))
        floor = desired.time_floor

        def machine_now() -> datetime:  # a clock reset to 1970 must not hold scheduled work back
            wall = clock_now()
            return wall if floor is None else max(wall, floor)

        liveness.beat()
        reporter = _progress_reporter(
            config, paths, clock_now, executor, desired, runtime_drift, errors, outcomes
        )
        ctx = ConvergeContext(
            config,
            paths,
            executor,
            hooks,
            rt.clock,
            machine_now,
            rt.checkpoint,
            liveness,
            desired.assignments,
            progress=reporter,
        )
        try:
            runtime_drift[:] = check_runtime_drift(ctx, desired, restore=config.drift == "restore")
        except Exception as exc:  # e.g. /proc unreadable: converging matters more than this check
            errors.append(exc)
        ctx.drifted = frozenset(d.app for d in runtime_drift if not d.restored)
        try:
            _converge_all(ctx, paths, desired, errors, outcomes)
        finally:
            with liveness.step("progress push", network):  # one in flight ends before the cycle's own
                progress_seq = reporter.close()
    liveness.beat()
    drift: dict[str, list[str]] = {}
    try:
        drift = check_drift(paths.config_hashes, restore=config.drift == "restore")
    except Exception as exc:
        errors.append(exc)
    with liveness.step("report", 2 * network):  # a refused push fetches, rebases and pushes again
        report, pushed = _report(
            config,
            paths,
            clock_now(),
            executor,
            desired,
            outcomes,
            (drift, runtime_drift),
            errors,
            after_seq=progress_seq,
        )
    _write_metrics(config, paths, clock_now(), desired, outcomes, report)
    retry = config.gates.retry_seconds if any(o.deferred for o in outcomes.values()) else None
    return CycleResult(outcomes, report, pushed, errors, desired.stale, desired.serial, retry)


def _write_metrics(
    config: AgentConfig,
    paths: AgentPaths,
    now: datetime,
    desired: Desired,
    outcomes: dict[str, AppOutcome],
    report: StatusReport | None,
) -> None:
    """The node_exporter textfile; best effort: a failure is logged by write_metrics, never raised."""
    facts = CycleFacts(
        now=now,
        poll_interval_seconds=float(config.poll.interval_seconds),
        polled=desired.polled,
        serial=desired.serial,
        expires_at=desired.expires_at,
        outbox=1 if paths.outbox.exists() else 0,
        report=report,
        outcomes=outcomes,
        apps=[*desired.assignments, *paths.journaled_apps()],
    )
    write_metrics(paths.metrics_file, facts)


def _repair(step: Callable[[], list[StateRepaired]]) -> list[Exception]:
    """What a repair pass reported; the error itself when it could not finish (the cycle goes on)."""
    try:
        return list(step())
    except Exception as exc:
        log.error("repairing the agent's state failed: %s", exc, exc_info=True)
        return [exc]


def _converge_all(
    ctx: ConvergeContext,
    paths: AgentPaths,
    desired: Desired,
    errors: list[Exception],
    outcomes: dict[str, AppOutcome],
) -> None:
    """Converge every app in order, filling ``outcomes`` as each one ends (a progress report built
    meanwhile tells the apps already done as this cycle left them)."""
    # Apps a release requires go first, so what depends on them can start in the same cycle.
    apps = set(desired.assignments) | set(paths.journaled_apps())
    for app in converge_order(apps, required_apps(desired.assignments)):
        try:
            outcome = converge_app(ctx, app, desired.assignments.get(app), known=desired.known)
        except TransportError as exc:  # the engine restarting: expected, retried; no traceback
            log.warning("%s: converge waits: %s", app, exc)
            errors.append(exc)
            continue
        except Exception as exc:  # corrupt journal, a bug: this app waits, the others go on
            log.error("%s: converge failed: %s", app, exc, exc_info=True)
            errors.append(exc)
            continue
        outcomes[app] = outcome
        if outcome.error is not None and not outcome.deferred:
            errors.append(outcome.error)
        errors.extend(outcome.warnings)


def _next_seq(paths: AgentPaths) -> int:
    """The seq above every report this robot built, queued or pushed."""
    known = (load_status(paths.status_file), Outbox(paths.outbox).pending(), load_push_state(paths.push_file))
    return max(r.seq if r else 0 for r in known) + 1


def _progress_reporter(
    config: AgentConfig,
    paths: AgentPaths,
    now: Callable[[], datetime],
    executor: Executor,
    desired: Desired,
    runtime_drift: list[RuntimeDrift],
    errors: list[Exception],
    outcomes: dict[str, AppOutcome],
) -> ProgressReporter:
    """This cycle's progress pushes (agent.report.progress): each report is the cycle's report as
    the journals stand at that moment, plus its ``progress``; pushed without rebase, and its seq and
    digest recorded in ``push.json`` like any push (the cycle's own report then goes above it)."""
    if config.poll.progress_seconds == 0:
        return ProgressReporter.disabled()
    try:
        first_seq = _next_seq(paths)
    except Exception as exc:  # an unreadable outbox: this cycle's report sorts it out, say nothing now
        log.warning("no progress reports this cycle: %s", exc)
        return ProgressReporter.disabled()

    def build(progress: Progress, seq: int) -> StatusReport:
        journals = {app: Journal(paths.journal(app)) for app in paths.journaled_apps()}
        restore = config.drift == "restore"  # restored files are not news; edited ones left are
        return status_report(
            config.device,
            seq,
            now(),
            journals=journals,
            ledgers={app: Ledger(paths.migrations(app)) for app in journals},
            executor=executor,
            desired=desired,
            outcomes=outcomes,  # the apps done this cycle so far (filled in by _converge_all)
            previous=load_status(paths.status_file),
            drift={} if restore else check_drift(paths.config_hashes, restore=False),
            runtime_drift=runtime_drift,
            last_error=f"{type(errors[0]).__name__}: {errors[0]}" if errors else None,
            progress=progress,
        )

    def push(report: StatusReport) -> None:
        pushed = push_status(config, paths.repo, report, rebase=False).report
        save_push_state(
            paths.push_file, PushState(seq=pushed.seq, at=report.reported_at, digest=digest(report))
        )

    return ProgressReporter(config.poll.progress_seconds, build, push, first_seq=first_seq)


def _report(
    config: AgentConfig,
    paths: AgentPaths,
    now: datetime,
    executor: Executor | None,
    desired: Desired,
    outcomes: dict[str, AppOutcome],
    drift: tuple[dict[str, list[str]], list[RuntimeDrift]],
    errors: list[Exception],
    *,
    after_seq: int = 0,
) -> tuple[StatusReport | None, bool]:
    """Build, store and (when due) push the report, its seq above ``after_seq`` (the progress
    reports' of this cycle); (report, pushed)."""
    try:
        outbox = Outbox(paths.outbox)
        previous = load_status(paths.status_file)
        waiting = outbox.pending()
        pushed_before = load_push_state(paths.push_file)  # status.json may be lost: seq must still grow
        seq = max([after_seq, *(r.seq if r else 0 for r in (previous, waiting, pushed_before))]) + 1
        journals = {app: Journal(paths.journal(app)) for app in paths.journaled_apps()}
        last_error = f"{type(errors[0]).__name__}: {errors[0]}" if errors else None
        report = status_report(
            config.device,
            seq,
            now,
            journals=journals,
            ledgers={app: Ledger(paths.migrations(app)) for app in journals},
            executor=executor,
            desired=desired,
            outcomes=outcomes,
            previous=previous,
            drift=drift[0],
            runtime_drift=drift[1],
            last_error=last_error,
        )
        write_atomic(paths.status_file, canonical_bytes(report), mode=0o600)
    except Exception as exc:
        log.error("report not built: %s", exc, exc_info=True)
        errors.append(exc)
        return None, False
    said = digest(report)
    heartbeat = timedelta(seconds=config.poll.heartbeat_seconds)
    if not push_due(load_push_state(paths.push_file), said, now, heartbeat, waiting=waiting is not None):
        return report, False
    outbox.put(report)
    try:
        pushed = push_status(config, paths.repo, report).report
    except Exception as exc:  # kept in the outbox; the next cycle sends a newer one
        log.warning("report %s not pushed: %s", report.seq, exc)
        errors.append(exc)
        return report, False
    outbox.sent(report.seq)
    # A rebase onto the server's report (a reflashed robot) lifts the seq: the next one goes above it.
    save_push_state(paths.push_file, PushState(seq=pushed.seq, at=now, digest=said))
    return report, True


# --- forever ----------------------------------------------------------------------------------------


def notify(**fields: str | int) -> bool:
    """systemd's notify protocol (a no-op outside systemd); never raises."""
    try:
        return sdnotify.notify(environ=None, **fields)
    except Exception:  # a lost status line must never stop the agent
        return False


def run_forever(config: AgentConfig, stop: threading.Event, *, runtime: Runtime | None = None) -> None:
    """Cycle until ``stop`` is set (SIGTERM sets it when called from the main thread)."""
    restore = _stop_on_sigterm(stop)
    backoff = Backoff(config.poll)
    rt = runtime or Runtime()
    liveness = rt.liveness or Liveness(sdnotify.watchdog_interval_seconds(), lambda: notify(WATCHDOG=1))
    cycle_runtime = dataclasses.replace(rt, liveness=liveness)
    notify(READY=1, STATUS="starting the first cycle")
    try:
        with liveness:
            while not stop.is_set():
                result = run_once(config, runtime=cycle_runtime)
                delay = backoff.failure() if result.transient else backoff.success()
                delay = min(delay, float(config.poll.heartbeat_seconds), result.retry_in_seconds or delay)
                notify(STATUS=_status_line(result, delay))
                with liveness.step("sleep", delay):
                    stop.wait(delay)
    finally:
        notify(STOPPING=1, STATUS="stopping")
        restore()


def _status_line(result: CycleResult, delay: float) -> str:
    states = ", ".join(
        f"{app} {o.entry.version} {o.entry.state.value}" for app, o in sorted(result.apps.items()) if o.entry
    )
    error = f"; error: {result.error}" if result.error else ""
    # The error last: systemd keeps STATUS_MAX_CHARS of the line, and a long error (a path, a
    # server's message) must not cut off when the next sync comes.
    return f"serial {result.serial}: {states or 'no apps'}; next sync in {delay:.0f} s{error}"


def _stop_on_sigterm(stop: threading.Event) -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(_signum: int, _frame: object) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


# --- status (no network) ------------------------------------------------------------------------------


def local_status(config: AgentConfig, environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """What ``fleetcd-agent status`` shows, from local files only: the last report, each app's
    journal (what is being applied and how far), and whether a report waits to be pushed.

    Read only: a corrupt file is listed under ``problems`` (the next cycle sets it aside and
    rebuilds it, agent.converge.repair) and everything else is still shown.
    """
    paths = agent_paths(config, environ)
    problems: list[str] = []

    def read(load: Callable[[], T]) -> T | None:
        try:
            return load()
        except CorruptState as exc:
            problems.append(str(exc))
            return None

    report = read(lambda: load_status(paths.status_file, strict=True))
    journals = {}
    for app in paths.journaled_apps():
        entry = read(Journal(paths.journal(app)).load)
        journals[app] = None if entry is None else entry.model_dump(mode="json")
    pending = read(Outbox(paths.outbox).pending)
    read(lambda: load_trust_state(paths.trust_file))
    read(lambda: load_ledger(paths.config_hashes))
    last_push = load_push_state(paths.push_file)
    return {
        "device": config.device,
        "state_dir": str(paths.state_dir),
        "report": None if report is None else report.model_dump(mode="json"),
        "journals": journals,
        "unsent_report_seq": None if pending is None else pending.seq,
        "last_push": None if last_push is None else last_push.model_dump(mode="json"),
        "problems": problems,
    }
