"""The ``fleetcd`` console script: the core's operator commands plus the controller's commands."""

from __future__ import annotations

import sys

from fleetcd.cli.main import cli, register_core_commands, run


def build() -> None:
    register_core_commands(cli)


def main(argv: list[str] | None = None) -> None:
    build()
    sys.exit(run(cli, argv))
