"""The ``fleetcd`` console script: the core's operator commands plus the controller's commands."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from fleetcd.cli.exitcodes import Exit
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


# The controller's git needs pygit2 >= 1.21 (Odb.read_header; no crash in PackBuilder), whose
# wheels start at Python 3.11. Robots on 3.10 run fleetcd-agent, which needs no pygit2.
OPERATOR_MIN_PYTHON = (3, 11)


def main(argv: list[str] | None = None) -> None:
    if sys.version_info < OPERATOR_MIN_PYTHON:
        sys.stderr.write(
            f"error: fleetcd (operator CLI and controller) needs Python 3.11 or newer; this is "
            f"{sys.version.split()[0]}. Robots on Python 3.10 run fleetcd-agent (docs/agent.md).\n"
        )
        sys.exit(Exit.SETUP)
    sys.exit(run(build(), argv))
