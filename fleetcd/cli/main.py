"""The one error handler of ``fleetcd`` and ``fleetcd-agent``: fleetcd's errors -> documented exit codes.

Like pre-commit's ``error_handler``: commands raise, :func:`run` turns the error into a one-line
message on standard error and an :class:`~fleetcd.cli.exitcodes.Exit` code (docs/cli.md).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import click

from fleetcd.cli.exitcodes import Exit
from fleetcd.errors import DISK_ERRNOS, InvalidContent, SetupError, TransportError


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
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            return _bug(exc)
        # A full, over-quota or read-only disk: the machine's problem, which the operator fixes.
        click.echo(f"error: {exc}", err=True)
        return int(Exit.SETUP)
    except Exception as exc:  # a bug: never exit 1, the code that says the repository is invalid
        return _bug(exc)
    return int(result) if isinstance(result, int) else int(Exit.OK)


def _bug(exc: Exception) -> int:
    traceback.print_exc()  # called inside the except block: the exception being handled
    click.echo(f"error: internal error (a bug in fleetcd, please report it): {exc!r}", err=True)
    return int(Exit.INTERNAL)
