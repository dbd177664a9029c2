"""``fleetcd sign RELEASE_FILE``: a release signer's detached signature over the release's bytes."""

from __future__ import annotations

from pathlib import Path

import click

from controller.cli.options import repo_found_from, signer_gnupghome_option
from fleetcd.operator import default_gnupghome, find_root, sign_release


@click.command("sign")
@click.argument("release_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--key",
    "fingerprint",
    metavar="FPR",
    help="Signing key fingerprint [default: the first release signer in the keyring].",
)
@signer_gnupghome_option
@repo_found_from("RELEASE_FILE")
def sign_command(
    release_file: Path, fingerprint: str | None, gnupghome: Path | None, repo: Path | None
) -> None:
    """Sign RELEASE_FILE (releases/<app>/<version>.yaml); it must validate first."""
    root = find_root(repo or release_file)
    written = sign_release(root, release_file, gnupghome or default_gnupghome(root), fingerprint)
    click.echo(f"signed: {written.relative_to(root).as_posix()}")
