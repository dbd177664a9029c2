"""Controller commands of the ``fleetcd`` CLI: thin wrappers that build settings and call one function."""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path

import click

from controller.errors import LoopAction, loop_action
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.source import Source
from controller.reconcile.steps import ReconcileResult, reconcile_once
from fleetcd.cli.exitcodes import Exit
from fleetcd.git.hostkeys import HostKeyPolicy
from fleetcd.git.remote import SshKey

SSH_KEY_ENV = "FLEETCD_SSH_KEY"
SSH_USER_ENV = "FLEETCD_SSH_USER"
HOST_KEY_ENV = "FLEETCD_SSH_HOST_KEY"
DEFAULT_SSH_USER = "git"  # gitolite's and most forges' SSH user; the URL's user wins

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


ssh_key_option = click.option(
    "--ssh-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar=SSH_KEY_ENV,
    default=None,
    help=f"Private SSH key for ssh:// remotes; the public key is KEY.pub [env: {SSH_KEY_ENV}].",
)
host_key_option = click.option(
    "--host-key-sha256",
    "host_key",
    envvar=HOST_KEY_ENV,
    default=None,
    help=f"Pin the server's SSH host key, 'SHA256:...' (else known_hosts) [env: {HOST_KEY_ENV}].",
)


def remote_source(url: str, cache: Path, ssh_key: Path | None = None, host_key: str | None = None) -> Source:
    """The fleet repository at ``url`` with this process's SSH identity (options, else environment).

    Every command that talks to a remote goes through here, so ``FLEETCD_SSH_KEY`` and
    ``FLEETCD_SSH_HOST_KEY`` work for ``get``/``history``/``receipt`` as for the controller.
    """
    key = ssh_key or (Path(os.environ[SSH_KEY_ENV]) if os.environ.get(SSH_KEY_ENV) else None)
    pin = host_key or os.environ.get(HOST_KEY_ENV) or None
    user = os.environ.get(SSH_USER_ENV) or DEFAULT_SSH_USER
    credentials = SshKey(user, key) if key is not None else None
    try:
        host_keys = HostKeyPolicy(pinned_sha256=(pin,)) if pin else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--host-key-sha256") from exc
    return Source.for_url(url, cache, credentials, host_keys)


def _settings(
    url: str, cache: Path, gnupghome: Path, flat_refs: bool, ssh_key: Path | None, host_key: str | None
) -> ControllerSettings:
    return ControllerSettings(
        source=remote_source(url, cache, ssh_key, host_key), gnupghome=gnupghome, namespaces=not flat_refs
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
@ssh_key_option
@host_key_option
def reconcile_command(
    once: bool,
    url: str,
    cache: Path,
    gnupghome: Path,
    flat_refs: bool,
    ssh_key: Path | None,
    host_key: str | None,
) -> int:
    """Reconcile once. Exit 0 applied (or nothing to do), 1 stalled on invalid content (recorded),
    4 local setup, 5 git or network (retry), 70 a bug (recorded as a failure; traceback on stderr)."""
    try:
        result = reconcile_once(_settings(url, cache, gnupghome, flat_refs, ssh_key, host_key))
    except Exception as exc:
        if loop_action(exc) is not LoopAction.BUG:
            raise  # the CLI's one handler maps content, setup and transport errors (docs/cli.md)
        traceback.print_exc()
        click.echo(f"error: a bug in fleetcd: {type(exc).__name__}: {exc}", err=True)
        return int(Exit.INTERNAL)
    _print(result)
    return int(Exit.INVALID) if result.stalled else int(Exit.OK)


@controller_group.command("run")
@repo_option
@cache_option
@gnupghome_option
@flat_refs_option
@ssh_key_option
@host_key_option
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
    ssh_key: Path | None,
    host_key: str | None,
    interval: float,
    watch: bool,
) -> None:
    """Reconcile forever (Ctrl-C stops). Holds no state outside git: kill it and start it anywhere.

    No error ends it: invalid content is recorded as a stall and waits for a new commit; git,
    network and setup errors and bugs are logged and retried with backoff (up to 300 s)."""
    from controller.runner import run_forever

    local = Path(url.removeprefix("file://"))
    run_forever(
        _settings(url, cache, gnupghome, flat_refs, ssh_key, host_key),
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
@ssh_key_option
@host_key_option
@click.option(
    "--since-anchor",
    is_flag=True,
    help="Check only what was appended since this cache last verified the log (older day files "
    "are compared by blob id). Default: check every line.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def audit_verify_command(
    url: str, cache: Path, ssh_key: Path | None, host_key: str | None, since_anchor: bool, as_json: bool
) -> int:
    """Check every audit line's hash chain. Exit 0 intact, 1 broken (file and line named)."""
    from controller.ops.audit import verify_audit

    verdict = verify_audit(remote_source(url, cache, ssh_key, host_key), since_anchor=since_anchor)
    report = verdict.report
    if as_json:
        out = {"ok": True, "lines": report.lines, "head": report.head_hash, "seq": report.last_seq}
        click.echo(json.dumps({**out, "since_seq": verdict.since_seq}))
    else:
        since = f", checked since seq {verdict.since_seq}" if verdict.since_seq is not None else ""
        head = f"head {report.head_hash[:16]} (seq {report.last_seq})"
        click.echo(f"audit log intact: {report.lines} lines{since}, {head}")
    return 0
