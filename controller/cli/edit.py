"""``fleetcd pause``, ``resume``, ``rollback``, ``deploy``, ``withdraw``: commit an edit to a work tree.

Thin wrappers around :mod:`controller.ops` (one edit, committed unless ``--no-commit``); errors map
to exit codes centrally (:func:`fleetcd.cli.main.run`).
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from controller.cli.options import approve_options, write_options
from controller.ops.local import Change
from fleetcd.models.base import SAFE_NAME_PATTERN


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
@write_options
def pause_command(rollout: str, repo: Path, no_commit: bool, author: str | None) -> None:
    """Commit `paused: true` for ROLLOUT: no new deployments; approvals stay valid."""
    from controller.ops.switches import set_paused

    _report(set_paused(repo, rollout, True, commit=not no_commit, author=author))


@click.command("resume")
@click.argument("rollout")
@write_options
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
@approve_options
@write_options
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
@approve_options
@write_options
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


@click.command("withdraw")
@click.argument("release", metavar="APP@VERSION", callback=_release_spec)
@click.option("--reason", required=True, help="Why: shown in get releases, status pages and the commit.")
@write_options
def withdraw_command(
    release: tuple[str, str], reason: str, repo: Path, no_commit: bool, author: str | None
) -> None:
    """Commit withdrawals/<app>/<version>.yaml: no robot gets APP@VERSION anew; its rollouts stall."""
    from controller.ops.withdraw import withdraw

    app, version = release
    _report(withdraw(repo, app, version, reason, commit=not no_commit, author=author))
