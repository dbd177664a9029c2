"""``fleetcd approve FILE``: an approver's signature over a rollout (and its release and configs) or
over a withdrawal (and the release it withdraws)."""

from __future__ import annotations

from pathlib import Path

import click

from controller.cli.options import repo_found_from, signer_gnupghome_option
from fleetcd.operator import approve_rollout, approve_rollout_all, default_gnupghome, find_root


@click.command("approve")
@click.argument("rollout_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--key",
    "fingerprint",
    metavar="FPR",
    help="Approver key fingerprint [default: the first approver in the keyring].",
)
@click.option(
    "--all-approvers",
    is_flag=True,
    help="Approve with every approver key in the keyring (development fleets).",
)
@signer_gnupghome_option
@repo_found_from("ROLLOUT_FILE")
def approve_command(
    rollout_file: Path,
    fingerprint: str | None,
    all_approvers: bool,
    gnupghome: Path | None,
    repo: Path | None,
) -> None:
    """Approve ROLLOUT_FILE: rollouts/<name>.yaml, or withdrawals/<app>/<version>.yaml (a withdrawal
    is in force only once approved). Editing the file afterwards voids the approval."""
    if fingerprint and all_approvers:
        raise click.UsageError("--key and --all-approvers exclude each other")
    root = find_root(repo or rollout_file)
    home = gnupghome or default_gnupghome(root)
    if all_approvers:
        written = approve_rollout_all(root, rollout_file, home)
    else:
        written = [approve_rollout(root, rollout_file, home, fingerprint)]
    for path in written:
        click.echo(f"approved: {path.relative_to(root).as_posix()}")
