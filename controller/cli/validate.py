"""``fleetcd validate``: check the whole fleet repository (cross-file, signatures, approvals).

Thin: parses options, calls :func:`fleetcd.validation.worktree.validate_work_tree`, prints the
report. Exit 0 when valid (warnings allowed), 1 when invalid (with ``--strict``, also on any
warning), 4 for setup problems (gpg missing, bad ``--base`` ref). Works as a pre-commit hook: the
file names pre-commit passes are accepted and ignored, because a change to one file can break a
reference in another.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from fleetcd.cli.exitcodes import Exit
from fleetcd.compat import UTC
from fleetcd.validation.report import Format, render
from fleetcd.validation.worktree import validate_work_tree


@click.command("validate")
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    help="Fleet repository work tree to validate.",
)
@click.option(
    "--base",
    metavar="REF",
    default=None,
    help="Git ref to compare with: releases published there must be unchanged (e.g. origin/main).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in Format]),
    default=None,
    help="Output: text (file:line lines), json, or github (workflow annotations).  [default: text]",
)
@click.option(
    "--strict",
    is_flag=True,
    default=False,
    help="Treat warnings (e.g. a wave that selects no robot) as errors: exit 1 on any.",
)
@click.option(
    "-o", "--output", type=click.Choice([f.value for f in Format]), default=None, help="Same as --format."
)
@click.argument("files", nargs=-1, type=click.Path(), metavar="[FILES]...")
@click.pass_context
def validate_command(
    ctx: click.Context,
    repo: Path,
    base: str | None,
    fmt: str | None,
    strict: bool,
    output: str | None,
    files: tuple[str, ...],
) -> None:
    """Validate the fleet repository: documents, references, configs, signatures and approvals.

    FILES (as passed by pre-commit) are ignored: the whole repository is always validated.
    Warnings (a rollout or wave that updates nobody, robots in no wave, a trust root expiring within
    30 days) do not fail it unless --strict is given.
    Exit codes: 0 valid, 1 invalid (with --strict: also any warning), 4 setup problem (gpg
    missing, bad --base ref).
    """
    del files  # accepted for pre-commit; one file's change can break another, so all are checked
    if fmt is not None and output is not None and fmt != output:
        raise click.UsageError(f"--format {fmt} and -o {output} disagree; give one")
    chosen = Format(fmt or output or Format.TEXT)
    result = validate_work_tree(repo, base, strict=strict, now=datetime.now(UTC))
    click.echo(render(result, chosen), nl=False)
    ctx.exit(int(Exit.OK if result.ok else Exit.INVALID))
