"""The ``fleetcd-agent`` console script (robots). Commands arrive with the agent issue."""

from __future__ import annotations

import sys

import click

from fleetcd import __version__
from fleetcd.cli.main import run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fleetcd-agent")
def cli() -> None:
    """fleetcd-agent: keeps one robot on the release its fleet repository assigns it."""


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(cli, argv))
