"""``fleetcd controller reconcile|run``: build :class:`ControllerSettings`, reconcile once or forever."""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path

import click

from controller.audit.events import AuditKind
from controller.cli.options import FiniteRange, controller_settings
from controller.errors import LoopAction, loop_action
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.steps import ReconcileResult, reconcile_once
from controller.runner import Observer
from fleetcd.cli.exitcodes import Exit


def _print(result: ReconcileResult) -> None:
    state = result.state_commit[:12] if result.state_commit else "unchanged"
    line = f"reconciled {result.main[:12]}: state {state}, {len(result.events)} events, "
    line += f"{result.desired_refs} robots updated, {result.signatures} signatures"
    down = [e.data.get("shard") for e in result.events if e.kind is AuditKind.STATUS_SHARD_UNREACHABLE]
    if down:
        line += f"; status shard unreachable: {', '.join(map(str, down))}"
    click.echo(line + (f"; STALLED: {result.stalled}" if result.stalled else ""))


def _address(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, int] | None:
    from controller.metrics.serve import parse_address

    if value is None:
        return None
    try:
        return parse_address(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _prom_file(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None and value.suffix != ".prom":
        raise click.BadParameter(f"{value}: node_exporter's textfile collector reads only *.prom files")
    if value is not None and not value.parent.is_dir():
        raise click.BadParameter(f"{value.parent}: no such folder")
    return value


@click.group("controller")
def controller_group() -> None:
    """Run the controller: turn merged commits into per-robot desired state, records and audit."""


@controller_group.command("reconcile")
@click.option("--once", is_flag=True, required=True, help="One reconcile, then exit (for CI jobs).")
@controller_settings
def reconcile_command(once: bool, settings: ControllerSettings) -> int:
    """Reconcile once. Exit 0 applied (or nothing to do), 1 stalled on invalid content (recorded),
    4 local setup, 5 git or network (retry), 70 a bug (recorded as a failure; traceback on stderr)."""
    try:
        result = reconcile_once(settings)
    except Exception as exc:
        if loop_action(exc) is not LoopAction.BUG:
            raise  # the CLI's one handler maps content, setup and transport errors (docs/cli.md)
        traceback.print_exc()
        click.echo(f"error: a bug in fleetcd: {type(exc).__name__}: {exc}", err=True)
        return int(Exit.INTERNAL)
    _print(result)
    return int(Exit.INVALID) if result.stalled else int(Exit.OK)


@controller_group.command("run")
@controller_settings
@click.option(
    "--interval",
    type=FiniteRange(1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds between reconciles.",
)
@click.option("--watch", is_flag=True, help="Also reconcile as soon as a local --repo changes (watchfiles).")
@click.option(
    "--metrics-address",
    metavar="HOST:PORT",
    callback=_address,
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9464). Off by default.",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_prom_file,
    help="Also write the metrics to this file after every reconcile, atomically (node_exporter's "
    "textfile collector; the name must end in .prom).",
)
def run_command(
    settings: ControllerSettings,
    interval: float,
    watch: bool,
    metrics_address: tuple[str, int] | None,
    metrics_file: Path | None,
) -> None:
    """Reconcile forever. Holds no state outside git: kill it and start it anywhere.

    No error ends it: invalid content is recorded as a stall and waits for a new commit; git,
    network and setup errors and bugs are logged and retried with backoff (up to 300 s).
    SIGTERM or Ctrl-C lets a running reconcile finish, then exits 0; a second one stops at once."""
    from controller.runner import HeapFreezer, SignalStop, run_forever

    local = Path(settings.source.url.removeprefix("file://"))
    with contextlib.ExitStack() as stack:
        stop = stack.enter_context(SignalStop())
        observe = _metrics(stack, settings, metrics_address, metrics_file)
        run_forever(
            settings,
            interval,
            watch_path=local if watch and local.exists() else None,
            report=_print,
            observe=observe,
            stop=stop.event,
            heap=HeapFreezer(),
        )
        click.echo(f"stopped on {stop.signal_name}", err=True)


def _metrics(
    stack: contextlib.ExitStack,
    settings: ControllerSettings,
    address: tuple[str, int] | None,
    path: Path | None,
) -> Observer | None:
    """The loop's observer when metrics are asked for: served over HTTP and/or written to ``path``."""
    if address is None and path is None:
        return None
    from controller.metrics.exposition import ControllerMetrics
    from controller.metrics.serve import MetricsServer, TextfileWriter, url_of

    metrics = ControllerMetrics(settings.push_attempts)
    if address is not None:
        server = stack.enter_context(MetricsServer(*address, metrics.render))
        click.echo(f"metrics: {url_of(address[0], server.port)}", err=True)
    writer = TextfileWriter(path, metrics.render) if path is not None else None

    def observe(result: ReconcileResult | None, seconds: float, error: Exception | None) -> None:
        metrics.observe(result, seconds, error=error, now=settings.now())
        if writer is not None:
            writer.write()

    return observe
