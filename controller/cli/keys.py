"""``fleetcd keys generate|list``: development keys, and which trusted keys have a key file."""

from __future__ import annotations

from pathlib import Path

import click

from fleetcd.operator import find_root, generate_dev_keys, list_keys
from fleetcd.operator.repo import DEV_GNUPGHOME

_REPO = click.option(
    "--repo",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path(),
    show_default="current directory",
    help="The fleet repository (or a directory inside it).",
)


@click.group("keys")
def keys_group() -> None:
    """Keys trusted by the fleet (fleet.yaml trust block, public keys in keys/)."""


@keys_group.command("generate")
@_REPO
@click.option(
    "--gnupghome",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Keyring for the new secret keys [default: <repo>/{DEV_GNUPGHOME}, git-ignored].",
)
def generate(repo: Path, gnupghome: Path | None) -> None:
    """Create development keys (ed25519, no passphrase) for every role and trust them in fleet.yaml."""
    root = find_root(repo)
    home = gnupghome or root / DEV_GNUPGHOME
    created = generate_dev_keys(root, home)
    for role, fingerprint in created.items():
        click.echo(f"{role:<16} {fingerprint}  keys/{role}.asc")
    click.echo(f"fleet.yaml trust block updated; secret keys in {home}")
    click.echo(
        "warning: these are DEVELOPMENT keys without a passphrase, all in one keyring. Never trust them "
        "on real robots; see keys/README.md for real keys.",
        err=True,
    )


@keys_group.command("list")
@_REPO
def list_command(repo: Path) -> None:
    """Show every key fleet.yaml trusts and whether keys/*.asc holds its public key."""
    listing = list_keys(find_root(repo))
    for status in listing.keys:
        key = status.key
        where = ", ".join(status.files) if status.files else "MISSING from keys/"
        click.echo(f"{key.role:<15} {key.fingerprint}  {key.name}  [{where}]")
    for path in listing.untrusted_files:
        click.echo(f"note: {path} holds no key fleet.yaml trusts", err=True)
    for problem in listing.problems:
        click.echo(f"error: {problem}", err=True)
