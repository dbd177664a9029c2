"""``fleetcd keys generate|list|propose|sign|chain``: development keys, which trusted keys have a key
file, and rotating the trust root (fleetcd.operator.rotation)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from fleetcd.cli.exitcodes import Exit
from fleetcd.compat import UTC
from fleetcd.operator import default_gnupghome, find_root, generate_dev_keys, list_keys
from fleetcd.operator.repo import DEV_GNUPGHOME
from fleetcd.operator.rotation import Changes, KeyArg, chain_status, propose, sign_version

_REPO = click.option(
    "--repo",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path(),
    show_default="current directory",
    help="The fleet repository (or a directory inside it).",
)


@click.group("keys")
def keys_group() -> None:
    """Keys trusted by the fleet (the trust root trust/root/<N>.yaml, public keys in keys/)."""


@keys_group.command("generate")
@_REPO
@click.option(
    "--gnupghome",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Keyring for the new secret keys [default: <repo>/{DEV_GNUPGHOME}, git-ignored].",
)
def generate(repo: Path, gnupghome: Path | None) -> None:
    """Create development keys (ed25519, no passphrase) for every role and sign trust/root/1.yaml."""
    root = find_root(repo)
    home = gnupghome or root / DEV_GNUPGHOME
    created = generate_dev_keys(root, home)
    for role, fingerprint in created.items():
        click.echo(f"{role:<16} {fingerprint}  keys/{role}.asc")
    click.echo(f"trust/root/1.yaml written and signed by the root key; secret keys in {home}")
    click.echo(
        "warning: these are DEVELOPMENT keys without a passphrase, all in one keyring. Never trust them "
        "on real robots; see keys/README.md for real keys.",
        err=True,
    )


@keys_group.command("list")
@_REPO
def list_command(repo: Path) -> int:
    """Show every key the trust root trusts and whether keys/*.asc holds its public key.

    Exit 1 when a key file does not load or a trusted key has no key file: nothing it signs can be
    verified, so a CI step running this must not pass."""
    listing = list_keys(find_root(repo))
    for status in listing.keys:
        key = status.key
        where = ", ".join(status.files) if status.files else "MISSING from keys/"
        click.echo(f"{key.role:<15} {key.fingerprint}  {key.name}  [{where}]")
    for path in listing.untrusted_files:
        click.echo(f"note: {path} holds no key the fleet trusts", err=True)
    for problem in listing.problems:
        click.echo(f"error: {problem}", err=True)
    missing = any(not status.files for status in listing.keys)
    return int(Exit.INVALID) if listing.problems or missing else int(Exit.OK)


_GNUPGHOME = click.option(
    "--gnupghome",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Keyring holding your secret key [default: <repo>/{DEV_GNUPGHOME} if present, else GNUPGHOME].",
)


def _keys(values: tuple[str, ...]) -> list[KeyArg]:
    return [KeyArg.parse(v) for v in values]


def _stages(values: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for text in values:
        stage, sep, count = text.partition("=")
        if not sep or not count.strip().isdigit() or not 0 <= int(count) <= 16:
            raise click.BadParameter(f"{text!r}: expected STAGE=N with N in 0..16", param_hint="--approvals")
        out[stage.strip()] = int(count)
    return out


@keys_group.command("propose")
@_REPO
@click.option(
    "--controller",
    "controller",
    multiple=True,
    metavar="NAME=FPR",
    help="Replace the controller keys (first listed signs).",
)
@click.option("--add-signer", multiple=True, metavar="NAME=FPR", help="Trust a release signer.")
@click.option("--remove-signer", multiple=True, metavar="FPR", help="Revoke a release signer.")
@click.option(
    "--signer-threshold", type=click.IntRange(1, 16), default=None, help="Release signatures needed."
)
@click.option("--add-approver", multiple=True, metavar="NAME=FPR", help="Trust an approver.")
@click.option("--remove-approver", multiple=True, metavar="FPR", help="Revoke an approver.")
@click.option("--approvals", multiple=True, metavar="STAGE=N", help="Approvals a stage needs.")
@click.option("--add-root-key", multiple=True, metavar="NAME=FPR", help="Add a root key.")
@click.option("--remove-root-key", multiple=True, metavar="FPR", help="Remove a root key.")
@click.option("--root-threshold", type=click.IntRange(1, 16), default=None, help="Root signatures needed.")
@click.option(
    "--expires",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d"]),
    default=None,
    help="UTC expiry of the new version.",
)
def propose_command(
    repo: Path,
    controller: tuple[str, ...],
    add_signer: tuple[str, ...],
    remove_signer: tuple[str, ...],
    signer_threshold: int | None,
    add_approver: tuple[str, ...],
    remove_approver: tuple[str, ...],
    approvals: tuple[str, ...],
    add_root_key: tuple[str, ...],
    remove_root_key: tuple[str, ...],
    root_threshold: int | None,
    expires: datetime | None,
) -> None:
    """Write the next trust-root version (unsigned) from the newest one with these changes."""
    changes = Changes(
        controller=_keys(controller),
        add_signers=_keys(add_signer),
        remove_signers=list(remove_signer),
        signer_threshold=signer_threshold,
        add_approvers=_keys(add_approver),
        remove_approvers=list(remove_approver),
        approvals=_stages(approvals),
        add_root_keys=_keys(add_root_key),
        remove_root_keys=list(remove_root_key),
        root_threshold=root_threshold,
        expires=expires.replace(tzinfo=UTC) if expires is not None else None,
    )
    root = find_root(repo)
    written = propose(root, changes)
    click.echo(
        f"wrote {written.relative_to(root)}: sign it with 'fleetcd keys sign' (root keys of both versions)"
    )


@keys_group.command("sign")
@_REPO
@_GNUPGHOME
@click.option(
    "--version", "version", type=click.IntRange(1), default=None, help="Version to sign [default: newest]."
)
@click.option("--key", "fingerprint", default=None, metavar="FPR", help="Sign with this root key only.")
def sign_command(repo: Path, gnupghome: Path | None, version: int | None, fingerprint: str | None) -> None:
    """Add your root-key signature to a trust-root version."""
    root = find_root(repo)
    for path in sign_version(root, gnupghome or default_gnupghome(root), version, fingerprint):
        click.echo(f"wrote {path.relative_to(root)}")


@keys_group.command("chain")
@_REPO
def chain_command(repo: Path) -> None:
    """List the trust-root versions, their root keys, and whether each verifies."""
    root = find_root(repo)
    statuses = chain_status(root)
    for status in statuses:
        verdict = "verified" if status.verified else f"NOT VERIFIED: {status.problem}"
        click.echo(f"version {status.version}  expires {status.expires}  root {status.root}  {verdict}")
    if not statuses or not statuses[-1].verified:
        raise SystemExit(int(Exit.INVALID))
