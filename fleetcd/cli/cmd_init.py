"""``fleetcd init DIR``: a new fleet repository from the shipped template (see fleetcd.operator)."""

from __future__ import annotations

from pathlib import Path

import click

from fleetcd.operator import init_repository


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--force",
    is_flag=True,
    help="Add the template to a non-empty directory (same-named files are overwritten).",
)
def command(directory: Path, force: bool) -> None:
    """Create a fleet repository in DIRECTORY: example fleet, CI workflows, CODEOWNERS, git on main."""
    result = init_repository(directory, force=force)
    git = "initialised git (branch main)" if result.created_git else "kept the existing git repository"
    click.echo(f"created {len(result.files)} files in {directory}; {git}")
    click.echo(
        "\nnext steps:\n"
        f"  cd {directory}\n"
        "  fleetcd keys generate            # development keys; keys/README.md explains real ones\n"
        "  fleetcd sign releases/navstack/1.0.0.yaml\n"
        "  fleetcd approve rollouts/navstack.yaml --all-approvers\n"
        "  fleetcd validate\n"
        "  git add -A && git commit -m 'New fleet'\n"
        "then read README.md: every change from here on is a pull request."
    )
