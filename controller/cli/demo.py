"""``fleetcd demo``: the whole story on a throwaway fleet (:mod:`controller.demo`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from fleetcd.cli.main import run


@click.command("demo")
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Create the demo fleet in DIR and keep it for exploring.",
)
@click.option("--docker", is_flag=True, help="Run the robots' apps as containers (needs a Docker Engine).")
@click.pass_context
def demo_command(ctx: click.Context, keep: Path | None, docker: bool) -> None:
    """Roll releases out to six robots with real agents, a failing canary included (< 2 minutes)."""
    from controller.demo import run_demo

    group = ctx.find_root().command
    assert isinstance(group, click.Group)

    def invoke(args: Sequence[str]) -> int:
        return run(group, list(args))

    run_demo(invoke, keep, docker)
