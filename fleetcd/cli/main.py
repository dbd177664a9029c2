"""The ``fleetcd`` command group: operator and CI commands that need only the shared core.

``controller.cli`` adds the controller's commands to this group and is the console script, so the
core never imports a role. Errors are mapped to exit codes in one place (:func:`run`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from fleetcd import __version__
from fleetcd.cli.exitcodes import Exit
from fleetcd.errors import InvalidContent, SetupError, TransportError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fleetcd")
def cli() -> None:
    """fleetcd: GitOps releases for robot fleets.

    Exit codes: 0 ok (plan: no changes), 1 invalid content, 2 usage, 3 plan has changes,
    4 local setup problem (gpg, repository, ref), 5 git/network failure, 70 internal error.
    """


def register_core_commands(group: click.Group) -> None:
    """Attach every core command; imported lazily so `--help` stays fast."""
    from fleetcd.cli import cmd_approve, cmd_init, cmd_keys, cmd_plan, cmd_sign, cmd_validate

    for module in (cmd_init, cmd_keys, cmd_sign, cmd_approve, cmd_validate, cmd_plan):
        group.add_command(module.command)


def run(group: click.Group, argv: list[str] | None = None) -> int:
    """Invoke ``group`` and turn fleetcd's errors into documented exit codes and one-line messages."""
    return guarded(lambda: group.main(args=argv, standalone_mode=False))


def guarded(action: Callable[[], Any]) -> int:
    try:
        result = action()
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        return int(Exit.USAGE)
    except InvalidContent as exc:
        for diagnostic in exc.diagnostics:
            click.echo(f"error: {diagnostic}", err=True)
        return int(Exit.INVALID)
    except SetupError as exc:
        click.echo(f"error: {exc}", err=True)
        return int(Exit.SETUP)
    except TransportError as exc:
        click.echo(f"error: {exc}", err=True)
        return int(Exit.TRANSPORT)
    return int(result) if isinstance(result, int) else int(Exit.OK)


def main() -> None:  # pragma: no cover - the installed entry point is controller.cli:main
    register_core_commands(cli)
    sys.exit(run(cli))
