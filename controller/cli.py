"""The ``fleetcd`` console script: the core's operator commands plus the controller's commands."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from fleetcd.cli.main import cli, register_core_commands, run


@click.command("demo")
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Create the demo fleet in DIR and keep it for exploring.",
)
@click.option("--docker", is_flag=True, help="Run the robots' apps as containers (needs a Docker Engine).")
def demo_command(keep: Path | None, docker: bool) -> None:
    """Roll releases out to six robots with real agents, a failing canary included (< 2 minutes)."""
    from controller.demo import run_demo

    def invoke(args: Sequence[str]) -> int:
        return run(cli, list(args))

    run_demo(invoke, keep, docker)


def build() -> click.Group:
    from controller.commands import audit_group, controller_group
    from controller.ops_commands import register_ops_commands
    from controller.sim.command import sim_command

    register_core_commands(cli)
    cli.add_command(demo_command)
    cli.add_command(controller_group)
    cli.add_command(audit_group)
    register_ops_commands(cli)
    cli.add_command(sim_command)
    return cli


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(build(), argv))
