"""The ``fleetcd-agent`` console script (robots): ``run`` (the daemon), ``once`` (one cycle), ``status``.

Thin: each command loads agent.yaml (strict YAML, schema, model: a typo is a file:line:field error,
exit 1) and calls one function of :mod:`agent.loop`. Exit codes are fleetcd's
(:func:`fleetcd.cli.main.run`, docs/cli.md): ``once`` exits 5 when the cycle met a network failure,
1 for desired state that failed verification, 4 for a local setup problem (a state directory it
cannot write, a full disk, corrupt state it had to set aside), 0 otherwise — a deployment that
rolled back is a successful cycle, reported, not an agent failure.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import click

from agent.errors import DiskFull
from agent.loop import CycleResult, local_status, run_forever, run_once
from fleetcd import __version__
from fleetcd.cli.main import run
from fleetcd.errors import FleetcdError, InvalidContent, SetupError, TransportError
from fleetcd.loading.documents import load_document
from fleetcd.models.agent import AgentConfig

DEFAULT_CONFIG = Path("/etc/fleetcd/agent.yaml")


def load_config(path: Path) -> AgentConfig:
    """agent.yaml as a model; InvalidContent (file:line:field) or SetupError when unreadable."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SetupError(f"{path}: cannot read the agent configuration: {exc.strerror or exc}") from exc
    return load_document(str(path), raw, AgentConfig, schema=False).model  # the model is the schema's source


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fleetcd-agent")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The robot's agent.yaml.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every step to standard error.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, verbose: bool) -> None:
    """fleetcd-agent: keeps one robot on the release its fleet repository assigns it.

    Exit codes: 0 ok, 1 invalid agent.yaml or desired state, 2 usage, 4 local setup problem,
    5 git/network failure, 70 internal error.
    """
    ctx.obj = config_path
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@cli.command("once")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def once_command(config_path: Path, output: str) -> int:
    """Run one cycle (sync, verify, converge, report) and exit."""
    result = run_once(load_config(config_path))
    click.echo(json.dumps(_cycle_json(result), indent=2) if output == "json" else _cycle_text(result))
    error = exit_error(result)
    if error is not None:
        raise error
    return 0


def exit_error(result: CycleResult) -> Exception | None:
    """The error ``once`` exits with: the first one of the cycle that has an exit code.

    A full disk is a local setup problem (4; the deployment waits for space). Any other ApplyError
    is a deployment's own failure, reported and handled (rolled back, failed): not the agent's.
    Anything that is no fleetcd error is a bug and is raised as it is.
    """
    for error in result.errors:
        if isinstance(error, DiskFull):
            return SetupError(f"{error}; the deployment waits for space and is retried next cycle")
        if isinstance(error, (InvalidContent, SetupError, TransportError)) or not isinstance(
            error, FleetcdError
        ):
            return error
    return None


@cli.command("run")
@click.pass_obj
def run_command(config_path: Path) -> int:
    """Run cycles forever (the systemd service); SIGTERM stops after the current cycle."""
    config = load_config(config_path)
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    run_forever(config, threading.Event())
    return 0


@cli.command("status")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def status_command(config_path: Path, output: str) -> int:
    """What runs, what is being applied, the last error: from local state, without the network.

    Exits 4 when a state file is corrupt (shown as ``problem:`` lines with everything readable).
    """
    status = local_status(load_config(config_path))
    click.echo(json.dumps(status, indent=2) if output == "json" else _status_text(status))
    problems = status["problems"]
    if isinstance(problems, list) and problems:
        raise SetupError(
            f"{len(problems)} corrupt state file(s) in {status['state_dir']}; the next cycle "
            "(fleetcd-agent once, or the service's) sets them aside and rebuilds them"
        )
    return 0


def _cycle_json(result: CycleResult) -> dict[str, Any]:
    return {
        "serial": result.serial,
        "stale": result.stale,
        "pushed": result.pushed,
        "errors": [f"{type(e).__name__}: {e}" for e in result.errors],
        "apps": {
            app: {
                "action": o.action.value,
                "reason": o.reason,
                "state": None if o.entry is None else o.entry.state.value,
                "version": None if o.entry is None else o.entry.version,
                "message": None if o.entry is None else o.entry.reason,
            }
            for app, o in sorted(result.apps.items())
        },
    }


def _cycle_text(result: CycleResult) -> str:
    data = _cycle_json(result)
    lines = [f"serial {data['serial']}{' (stale)' if result.stale else ''}, report pushed: {result.pushed}"]
    for app, seen in data["apps"].items():
        note = f" — {seen['message']}" if seen["message"] else ""
        lines.append(
            f"  {app}: {seen['version'] or '-'} {seen['state'] or 'nothing'} ({seen['action']}){note}"
        )
    lines += [f"  error: {error}" for error in data["errors"]]
    return "\n".join(lines)


def _status_text(status: dict[str, Any]) -> str:
    report = status["report"] or {}
    lines = [f"device {status['device']} (state in {status['state_dir']})"]
    if not report:
        lines.append("  no cycle has run yet")
    else:
        stale = " — STALE: the desired state expired" if report.get("stale") else ""
        lines.append(
            f"  desired serial {report.get('bundle_serial')}, reported {report['reported_at']}{stale}"
        )
        for app in report.get("apps", []):
            lines.append(
                f"  {app['app']}: running {app['current'] or '-'} (previous {app['previous'] or '-'})"
            )
        for dep in report.get("deployments", []):
            message = f": {dep['message']}" if dep["message"] else ""
            state = f"{dep['activity']} [{dep['error']}]"
            lines.append(f"  {dep['app']} {dep['version']} {state} {dep['deployment_id']}{message}")
        if report.get("drift"):
            lines.append("  drifted: " + ", ".join(report["drift"]))
        lines.append(f"  last error: {report.get('last_error') or 'none'}")
    for app, entry in status["journals"].items():
        if entry is not None and entry["state"] not in ("healthy", "rolled_back", "failed", "idle", "staged"):
            lines.append(
                f"  {app}: in progress: {entry['version']} {entry['state']} (start {entry['attempts']})"
            )
    if status["unsent_report_seq"] is not None:
        lines.append(f"  report {status['unsent_report_seq']} waits to be pushed")
    lines += [f"  problem: {problem}" for problem in status["problems"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(cli, argv))
