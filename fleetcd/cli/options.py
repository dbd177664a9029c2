"""Click options shared by several commands, so their wording and defaults never drift apart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

gnupghome_option = click.option(
    "--gnupghome",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Keyring with your secret key [default: <repo>/.fleetcd/gnupg, else $GNUPGHOME or ~/.gnupg].",
)


def repo_found_from(argument: str) -> Callable[[F], F]:
    """``--repo``: for commands that take a file inside the fleet repository."""
    return click.option(
        "--repo",
        type=click.Path(file_okay=False, exists=True, path_type=Path),
        help=f"Fleet repository [default: found from {argument}].",
    )
