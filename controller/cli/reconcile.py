"""``fleetcd controller reconcile|run``: build :class:`ControllerSettings`, reconcile once or forever."""

from __future__ import annotations

import traceback
from pathlib import Path

import click

from controller.audit.events import AuditKind
from controller.cli.options import (
    commit_status_forge,
    controller_options,
    remote_source,
    status_shards_of,
    webhook_secret,
)
from controller.errors import LoopAction, loop_action
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.steps import ReconcileResult, reconcile_once
from fleetcd.cli.exitcodes import Exit
from fleetcd.shards import ShardSpec


def _settings(
    url: str,
    cache: Path,
    gnupghome: Path,
    flat_refs: bool,
    ssh_key: Path | None,
    host_key: str | None,
    webhook_secret_file: Path | None,
    forge: tuple[str | None, str | None, str | None, Path | None] = (None, None, None, None),
    status_shards: tuple[ShardSpec, ...] = (),
) -> ControllerSettings:
    source = remote_source(url, cache, ssh_key, host_key)
    return ControllerSettings(
        source=source,
        status_shards=status_shards_of(status_shards, source),
        gnupghome=gnupghome,
        namespaces=not flat_refs,
        webhook_secret=webhook_secret(webhook_secret_file),
        commit_status=commit_status_forge(*forge),
    )


def _print(result: ReconcileResult) -> None:
    state = result.state_commit[:12] if result.state_commit else "unchanged"
    line = f"reconciled {result.main[:12]}: state {state}, {len(result.events)} events, "
    line += f"{result.desired_refs} robots updated, {result.signatures} signatures"
    down = [e.data.get("shard") for e in result.events if e.kind is AuditKind.STATUS_SHARD_UNREACHABLE]
    if down:
        line += f"; status shard unreachable: {', '.join(map(str, down))}"
    click.echo(line + (f"; STALLED: {result.stalled}" if result.stalled else ""))


@click.group("controller")
def controller_group() -> None:
    """Run the controller: turn merged commits into per-robot desired state, records and audit."""


@controller_group.command("reconcile")
@click.option("--once", is_flag=True, required=True, help="One reconcile, then exit (for CI jobs).")
@controller_options
def reconcile_command(
    once: bool,
    url: str,
    cache: Path,
    gnupghome: Path,
    flat_refs: bool,
    status_shards: tuple[ShardSpec, ...],
    ssh_key: Path | None,
    host_key: str | None,
    webhook_secret_file: Path | None,
    commit_status_forge: str | None,
    commit_status_api: str | None,
    commit_status_repo: str | None,
    commit_status_token_file: Path | None,
) -> int:
    """Reconcile once. Exit 0 applied (or nothing to do), 1 stalled on invalid content (recorded),
    4 local setup, 5 git or network (retry), 70 a bug (recorded as a failure; traceback on stderr)."""
    settings = _settings(
        url,
        cache,
        gnupghome,
        flat_refs,
        ssh_key,
        host_key,
        webhook_secret_file,
        (commit_status_forge, commit_status_api, commit_status_repo, commit_status_token_file),
        status_shards,
    )
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
@controller_options
@click.option(
    "--interval",
    type=click.FloatRange(1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds between reconciles.",
)
@click.option("--watch", is_flag=True, help="Also reconcile as soon as a local --repo changes (watchfiles).")
def run_command(
    url: str,
    cache: Path,
    gnupghome: Path,
    flat_refs: bool,
    status_shards: tuple[ShardSpec, ...],
    ssh_key: Path | None,
    host_key: str | None,
    webhook_secret_file: Path | None,
    commit_status_forge: str | None,
    commit_status_api: str | None,
    commit_status_repo: str | None,
    commit_status_token_file: Path | None,
    interval: float,
    watch: bool,
) -> None:
    """Reconcile forever (Ctrl-C stops). Holds no state outside git: kill it and start it anywhere.

    No error ends it: invalid content is recorded as a stall and waits for a new commit; git,
    network and setup errors and bugs are logged and retried with backoff (up to 300 s)."""
    from controller.runner import run_forever

    local = Path(url.removeprefix("file://"))
    run_forever(
        _settings(
            url,
            cache,
            gnupghome,
            flat_refs,
            ssh_key,
            host_key,
            webhook_secret_file,
            (commit_status_forge, commit_status_api, commit_status_repo, commit_status_token_file),
            status_shards,
        ),
        interval,
        watch_path=local if watch and local.exists() else None,
        report=_print,
    )
