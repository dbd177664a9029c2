"""Controller commands of the ``fleetcd`` CLI: thin wrappers that build settings and call one function."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from controller.reconcile.settings import ControllerSettings
from controller.reconcile.source import Source
from controller.reconcile.steps import ReconcileResult, reconcile_once

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fleetcd"

repo_option = click.option(
    "--repo", "url", required=True, help="Fleet repository: a path, file://, or ssh:// URL."
)
cache_option = click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_CACHE,
    show_default=True,
    help="Where the local mirror lives (a cache; safe to delete).",
)
gnupghome_option = click.option(
    "--gnupghome",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="GNUPGHOME",
    required=True,
    help="Keyring holding the controller's secret key [env: GNUPGHOME].",
)
flat_refs_option = click.option(
    "--flat-refs",
    is_flag=True,
    help="Write refs/fleetcd/desired/<robot> instead of per-robot namespaces (no server setup needed).",
)


def _settings(url: str, cache: Path, gnupghome: Path, flat_refs: bool) -> ControllerSettings:
    return ControllerSettings(
        source=Source.for_url(url, cache), gnupghome=gnupghome, namespaces=not flat_refs
    )


def _print(result: ReconcileResult) -> None:
    state = result.state_commit[:12] if result.state_commit else "unchanged"
    line = f"reconciled {result.main[:12]}: state {state}, {len(result.events)} events, "
    line += f"{result.desired_refs} robots updated, {result.signatures} signatures"
    click.echo(line + (f"; STALLED: {result.stalled}" if result.stalled else ""))


@click.group("controller")
def controller_group() -> None:
    """Run the controller: turn merged commits into per-robot desired state, records and audit."""


@controller_group.command("reconcile")
@click.option("--once", is_flag=True, required=True, help="One reconcile, then exit (for CI jobs).")
@repo_option
@cache_option
@gnupghome_option
@flat_refs_option
def reconcile_command(once: bool, url: str, cache: Path, gnupghome: Path, flat_refs: bool) -> int:
    """Reconcile once. Exit 0 when applied, 1 when stalled on invalid content."""
    result = reconcile_once(_settings(url, cache, gnupghome, flat_refs))
    _print(result)
    return 1 if result.stalled else 0


@controller_group.command("run")
@repo_option
@cache_option
@gnupghome_option
@flat_refs_option
@click.option(
    "--interval",
    type=click.FloatRange(1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds between reconciles.",
)
@click.option("--watch", is_flag=True, help="Also reconcile as soon as a local --repo changes (watchfiles).")
def run_command(
    url: str, cache: Path, gnupghome: Path, flat_refs: bool, interval: float, watch: bool
) -> None:
    """Reconcile forever (Ctrl-C stops). Holds no state outside git: kill it and start it anywhere."""
    from controller.runner import run_forever

    local = Path(url.removeprefix("file://"))
    run_forever(
        _settings(url, cache, gnupghome, flat_refs),
        interval,
        watch_path=local if watch and local.exists() else None,
        report=_print,
    )


@click.group("audit")
def audit_group() -> None:
    """The hash-chained audit log on the state branch."""


@audit_group.command("verify")
@repo_option
@cache_option
@click.option(
    "--since-anchor",
    is_flag=True,
    help="Check only what was appended since this cache last verified the log (older day files "
    "are compared by blob id). Default: check every line.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def audit_verify_command(url: str, cache: Path, since_anchor: bool, as_json: bool) -> int:
    """Check every audit line's hash chain. Exit 0 intact, 1 broken (file and line named)."""
    from controller.ops.audit import verify_audit

    verdict = verify_audit(Source.for_url(url, cache), since_anchor=since_anchor)
    report = verdict.report
    if as_json:
        out = {"ok": True, "lines": report.lines, "head": report.head_hash, "seq": report.last_seq}
        click.echo(json.dumps({**out, "since_seq": verdict.since_seq}))
    else:
        since = f", checked since seq {verdict.since_seq}" if verdict.since_seq is not None else ""
        head = f"head {report.head_hash[:16]} (seq {report.last_seq})"
        click.echo(f"audit log intact: {report.lines} lines{since}, {head}")
    return 0
