"""``fleetcd init DIR``: a new fleet repository from the shipped template (see fleetcd.operator).

Besides the template it writes where the new fleet's CI installs fleetcd from
(``.github/fleetcd-requirements.txt``, chosen in ``fleetcd.operator.installspec``) and says which
spec it chose and why.
"""

from __future__ import annotations

from pathlib import Path

import click

from fleetcd.errors import SetupError
from fleetcd.operator import init_repository
from fleetcd.operator.installspec import (
    REQUIREMENTS_FILE,
    InstallSpec,
    default_install_spec,
    explicit_install_spec,
    pip_options,
    with_pip_options,
)


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--force",
    is_flag=True,
    help="Add the template to a non-empty directory (same-named files are overwritten).",
)
@click.option(
    "--install-spec",
    "install_spec",
    metavar="SPEC",
    help="The fleetcd requirement CI installs, e.g. 'fleetcd==0.2.0' or "
    "'fleetcd @ git+https://git.example.com/fleetcd.git@v0.2.0'. Default: where the running fleetcd "
    "came from (a placeholder to replace when that is a local checkout or file).",
)
@click.option("--index-url", metavar="URL", help="The package index CI installs from (an internal index).")
@click.option(
    "--find-links",
    metavar="URL|DIR",
    multiple=True,
    help="A wheel directory or page CI installs from (repeatable).",
)
@click.option("--no-index", is_flag=True, help="CI installs from --find-links only, never from an index.")
def init_command(
    directory: Path,
    force: bool,
    install_spec: str | None,
    index_url: str | None,
    find_links: tuple[str, ...],
    no_index: bool,
) -> None:
    """Create a fleet repository in DIRECTORY: example fleet, CI workflows, CODEOWNERS, git on main."""
    try:
        spec = with_pip_options(
            default_install_spec() if install_spec is None else explicit_install_spec(install_spec),
            index_url=index_url,
            find_links=find_links,
            no_index=no_index,
        )
    except SetupError as exc:  # a bad option value is a usage error (exit 2), not a broken setup
        raise click.UsageError(str(exc)) from exc
    result = init_repository(directory, force=force, install=spec)
    git = "initialised git (branch main)" if result.created_git else "kept the existing git repository"
    click.echo(f"created {len(result.files)} files in {directory}; {git}")
    _describe(result.install)
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


def _describe(spec: InstallSpec) -> None:
    click.echo(f"CI installs {spec.requirement} ({REQUIREMENTS_FILE}; {spec.source}: {spec.why})")
    options = pip_options(spec)
    if options:
        click.echo(f"  with pip options: {' '.join(options)}")
    if spec.is_placeholder:
        click.echo(
            f"warning: {REQUIREMENTS_FILE} holds a placeholder that CI cannot install: set the "
            "requirement there (a version on your index, a git URL with a tag, or a wheel URL) "
            "or run init again with --install-spec",
            err=True,
        )
