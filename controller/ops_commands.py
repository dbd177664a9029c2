"""Operator commands of the ``fleetcd`` CLI: ``get``, ``history``, ``receipt`` (read the remote) and
``pause``, ``resume``, ``rollback``, ``deploy`` (commit to a local work tree). Thin wrappers around
:mod:`controller.ops`; errors map to exit codes centrally (:func:`fleetcd.cli.main.run`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from controller.commands import DEFAULT_CACHE, remote_source, repo_option
from controller.ops.local import Change
from controller.ops.output import FORMATS, Column, OutputFormat, render_data, render_table
from fleetcd.models.base import SAFE_NAME_PATTERN

F = TypeVar("F", bound=Callable[..., Any])

# Not the controller's mirror: a fetch here force-updates the state branch in the mirror, which would
# race a controller on the same machine between its state commit and its push.
cache_option = click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_CACHE / "operator",
    show_default=True,
    help="Where the local mirror for reading lives (a cache; safe to delete).",
)
output_option = click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format.",
)
local_repo_option = click.option(
    "--repo",
    "repo",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path(),
    show_default=True,
    help="Local fleet repository work tree (its root, or any folder inside it).",
)


def _write_options(func: F) -> F:
    func = click.option("--author", metavar="'NAME <EMAIL>'", help="Commit author [default: git config].")(
        func
    )
    func = click.option("--no-commit", is_flag=True, help="Leave the edit uncommitted (for a pull request).")(
        func
    )
    return local_repo_option(func)


def _approve_options(func: F) -> F:
    func = click.option(
        "--gnupghome",
        type=click.Path(file_okay=False, exists=True, path_type=Path),
        help="Keyring with approver keys for --approve [default: <repo>/.fleetcd/gnupg, else $GNUPGHOME].",
    )(func)
    return click.option(
        "--approve", is_flag=True, help="Also approve with every approver key in the keyring."
    )(func)


def _emit(rows: Sequence[dict[str, Any]], columns: Sequence[Column], fmt: OutputFormat, empty: str) -> None:
    if fmt != "table":
        click.echo(render_data(list(rows), fmt))
    elif not rows:
        click.echo(empty, err=True)
    else:
        click.echo(render_table(rows, columns))


@click.group("get")
def get_group() -> None:
    """List rollouts, devices or releases as the controller and main see them."""


@get_group.command("rollouts")
@repo_option
@cache_option
@output_option
def get_rollouts(url: str, cache: Path, fmt: OutputFormat) -> None:
    """Rollouts on the state branch: release, generation, phase and wave progress."""
    from controller.ops.listing import ROLLOUT_COLUMNS, rollout_rows
    from controller.ops.remote import read_remote

    view = read_remote(remote_source(url, cache))
    _emit(
        rollout_rows(view), ROLLOUT_COLUMNS, fmt, "no rollouts on the state branch (has the controller run?)"
    )


@get_group.command("devices")
@repo_option
@cache_option
@output_option
def get_devices(url: str, cache: Path, fmt: OutputFormat) -> None:
    """Robots: site, connectivity, last seen, and per app the running version and newest deployment."""
    from controller.ops.listing import DEVICE_COLUMNS, device_rows
    from controller.ops.remote import read_remote

    view = read_remote(remote_source(url, cache))
    _emit(device_rows(view), DEVICE_COLUMNS, fmt, "no robots on main or the state branch")


@get_group.command("releases")
@repo_option
@cache_option
@output_option
def get_releases(url: str, cache: Path, fmt: OutputFormat) -> None:
    """Releases on main and whether their signatures meet the signer threshold."""
    from controller.ops.listing import RELEASE_COLUMNS, release_rows
    from controller.ops.remote import read_remote

    view = read_remote(remote_source(url, cache))
    _emit(release_rows(view), RELEASE_COLUMNS, fmt, "no releases on main")


@click.command("history")
@click.argument("device")
@repo_option
@cache_option
@output_option
def history_command(device: str, url: str, cache: Path, fmt: OutputFormat) -> int:
    """DEVICE's deployment records over generations and its audit lines, newest first. Exit 1: unknown."""
    from controller.ops.history import AUDIT_COLUMNS, RECORD_COLUMNS, device_history
    from controller.ops.remote import read_remote

    view = read_remote(remote_source(url, cache))
    history = device_history(view.repo, view.state, device)
    if device not in view.spec.devices and not history.records and not history.audit:
        click.echo(f"error: no robot {device!r} on main, the state branch or in the audit log", err=True)
        return 1
    data = history.as_json()
    if fmt != "table":
        click.echo(render_data(data, fmt))
        return 0
    click.echo(f"Deployments of {device}:")
    click.echo(render_table(data["records"], RECORD_COLUMNS) if data["records"] else "  none")
    if not history.complete:
        click.echo(f"  (searched the newest {history.commits_searched} state commits; older ones not shown)")
    click.echo(f"\nAudit log lines naming {device}:")
    click.echo(render_table(data["audit"], AUDIT_COLUMNS) if data["audit"] else "  none")
    return 0


@click.command("receipt")
@click.argument("rollout")
@click.option(
    "--generation", type=click.IntRange(min=1), help="Generation [default: the newest with a receipt]."
)
@repo_option
@cache_option
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["markdown", "yaml"]),
    default="markdown",
    show_default=True,
    help="The page for people, or the signed YAML itself.",
)
def receipt_command(rollout: str, generation: int | None, url: str, cache: Path, fmt: str) -> None:
    """Show ROLLOUT's receipt once its controller signature verifies. Exit 1: missing or not verified."""
    from controller.ops.receipt import read_receipt
    from controller.ops.remote import read_remote

    receipt = read_receipt(read_remote(remote_source(url, cache)), rollout, generation)
    click.echo(
        receipt.markdown.rstrip("\n")
        if fmt == "markdown"
        else receipt.yaml_bytes.decode("utf-8").rstrip("\n")
    )
    click.echo(
        f"\nsignature verified: {receipt.path} signed by the controller key {receipt.signer}", err=True
    )
    if not receipt.stored_markdown_matches:
        md = receipt.path.removesuffix(".yaml") + ".md"
        click.echo(
            f"note: {md} on the state branch differs from the signed receipt; shown: the signed one", err=True
        )


def _report(change: Change) -> None:
    if not change.changed:
        for note in change.notes:
            click.echo(f"nothing to do: {note}")
        return
    if change.commit is not None:
        click.echo(f"committed {change.commit}")
    else:
        click.echo(f"edited {change.path} (not committed); suggested commit message:")
    click.echo("\n".join(f"    {line}".rstrip() for line in change.message.rstrip("\n").split("\n")))
    for note in change.notes:
        if note.startswith("APPROVALS NEEDED"):
            click.secho(f"warning: {note}", fg="yellow", err=True)


@click.command("pause")
@click.argument("rollout")
@_write_options
def pause_command(rollout: str, repo: Path, no_commit: bool, author: str | None) -> None:
    """Commit `paused: true` for ROLLOUT: no new deployments; approvals stay valid."""
    from controller.ops.switches import set_paused

    _report(set_paused(repo, rollout, True, commit=not no_commit, author=author))


@click.command("resume")
@click.argument("rollout")
@_write_options
def resume_command(rollout: str, repo: Path, no_commit: bool, author: str | None) -> None:
    """Commit `paused: false` for ROLLOUT; approvals stay valid."""
    from controller.ops.switches import set_paused

    _report(set_paused(repo, rollout, False, commit=not no_commit, author=author))


def _home(repo: Path, approve: bool, gnupghome: Path | None) -> Path | None:
    if not approve:
        return None
    from fleetcd.operator import default_gnupghome, find_root

    return gnupghome or default_gnupghome(find_root(repo))


@click.command("rollback")
@click.argument("rollout")
@click.option(
    "--to", "to", metavar="VERSION", help="Release to go back to [default: the previous published one]."
)
@_approve_options
@_write_options
def rollback_command(
    rollout: str,
    to: str | None,
    approve: bool,
    gnupghome: Path | None,
    repo: Path,
    no_commit: bool,
    author: str | None,
) -> None:
    """Commit ROLLOUT set back to an earlier release. This changes what approvers signed."""
    from controller.ops.switches import rollback

    home = _home(repo, approve, gnupghome)
    _report(rollback(repo, rollout, to, approve_with=home, commit=not no_commit, author=author))


def _release_spec(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, str]:
    app, sep, version = value.rpartition("@")
    if not sep or not re.fullmatch(SAFE_NAME_PATTERN, app) or not version:
        raise click.BadParameter("expected APP@VERSION, e.g. navstack@1.2.0")
    return app, version


def _key(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from controller.ops.deploy import key_problem

    problem = key_problem(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


@click.command("deploy")
@click.argument("release", metavar="APP@VERSION", callback=_release_spec)
@click.option(
    "--to", "targets", required=True, multiple=True, metavar="TARGET", help="Cohort or robot (repeatable)."
)
@click.option("--idempotency-key", "key", required=True, callback=_key, help="Same key again writes nothing.")
@_approve_options
@_write_options
def deploy_command(
    release: tuple[str, str],
    targets: tuple[str, ...],
    key: str,
    approve: bool,
    gnupghome: Path | None,
    repo: Path,
    no_commit: bool,
    author: str | None,
) -> None:
    """Commit rollouts/<app>-<key>.yaml: APP@VERSION to TARGET with the fleet's default strategy."""
    from controller.ops.deploy import deploy

    home = _home(repo, approve, gnupghome)
    app, version = release
    _report(deploy(repo, app, version, targets, key, approve_with=home, commit=not no_commit, author=author))


def register_ops_commands(group: click.Group) -> None:
    for command in (
        get_group,
        history_command,
        receipt_command,
        pause_command,
        resume_command,
        rollback_command,
        deploy_command,
    ):
        group.add_command(command)
