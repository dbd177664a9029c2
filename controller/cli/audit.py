"""``fleetcd audit verify``: check the hash chain of the audit log on the state branch."""

from __future__ import annotations

import json
from pathlib import Path

import click

from controller.cli.options import cache_option, host_key_option, remote_source, repo_option, ssh_key_option


@click.group("audit")
def audit_group() -> None:
    """The hash-chained audit log on the state branch."""


@audit_group.command("verify")
@repo_option
@cache_option
@ssh_key_option
@host_key_option
@click.option(
    "--since-anchor",
    is_flag=True,
    help="Check only what was appended since this cache last verified the log (older day files "
    "are compared by blob id). Default: check every line.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def audit_verify_command(
    url: str, cache: Path, ssh_key: Path | None, host_key: str | None, since_anchor: bool, as_json: bool
) -> int:
    """Check every audit line's hash chain and the signed heads (controller keys of main's trust
    root). Exit 0 intact, 1 broken (file and line, or the first unsigned or wrongly signed head, named)."""
    from controller.ops.audit import verify_audit

    verdict = verify_audit(remote_source(url, cache, ssh_key, host_key), since_anchor=since_anchor)
    report = verdict.report
    if as_json:
        out = {"ok": True, "lines": report.lines, "head": report.head_hash, "seq": report.last_seq}
        heads = {"signed_seq": verdict.heads.signed_seq, "heads_checked": verdict.heads.checked}
        click.echo(json.dumps({**out, "since_seq": verdict.since_seq, **heads}))
    else:
        since = f", checked since seq {verdict.since_seq}" if verdict.since_seq is not None else ""
        head = f"head {report.head_hash[:16]} (seq {report.last_seq})"
        signed = (
            f"head signed by a controller key ({verdict.heads.checked} signed heads checked)"
            if verdict.heads.signed_seq
            else "no lines, no signed head"
        )
        click.echo(f"audit log intact: {report.lines} lines{since}, {head}, {signed}")
    return 0
