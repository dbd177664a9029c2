"""``fleetcd get``, ``history`` and ``receipt``: read the fleet repository's remote and print.

Thin wrappers around :mod:`controller.ops` (read through the operator's own mirror,
:data:`~controller.cli.options.operator_remote_options`); errors map to exit codes centrally
(:func:`fleetcd.cli.main.run`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from controller.cli.options import (
    operator_remote_options,
    output_option,
    remote_source,
    status_shard_option,
    status_shards_of,
)
from controller.ops.output import Column, OutputFormat, render_data, render_table
from fleetcd.compat import UTC
from fleetcd.shards import ShardSpec

if TYPE_CHECKING:
    from controller.ops.remote import RemoteView
    from fleetcd.shards import ShardSpec


def _emit(rows: Sequence[dict[str, Any]], columns: Sequence[Column], fmt: OutputFormat, empty: str) -> None:
    if fmt != "table":
        click.echo(render_data(list(rows), fmt))
    elif not rows:
        click.echo(empty, err=True)
    else:
        click.echo(render_table(rows, columns))


@click.group("get")
def get_group() -> None:
    """List rollouts, devices or releases as the controller and main see them."""


@get_group.command("rollouts")
@operator_remote_options
@output_option
def get_rollouts(url: str, cache: Path, fmt: OutputFormat) -> None:
    """Rollouts on the state branch: release, generation, phase and wave progress."""
    from controller.ops.listing import ROLLOUT_COLUMNS, rollout_rows
    from controller.ops.remote import read_remote

    view = read_remote(remote_source(url, cache))
    _emit(
        rollout_rows(view), ROLLOUT_COLUMNS, fmt, "no rollouts on the state branch (has the controller run?)"
    )


@get_group.command("devices")
@operator_remote_options
@status_shard_option
@output_option
def get_devices(url: str, cache: Path, status_shards: tuple[ShardSpec, ...], fmt: OutputFormat) -> None:
    """Robots: site, connectivity, last seen, and per app the running version and newest deployment."""
    from controller.ops.listing import DEVICE_COLUMNS, device_rows
    from controller.ops.remote import read_remote

    source = remote_source(url, cache)
    view = read_remote(source, status_shards_of(status_shards, source))
    for name, error in sorted(view.unreachable_shards.items()):
        shown = "its robots' last fetched reports are shown"
        click.echo(f"warning: status shard {name} unreachable, {shown}: {error}", err=True)
    _emit(device_rows(view), DEVICE_COLUMNS, fmt, "no robots on main or the state branch")


@get_group.command("releases")
@operator_remote_options
@output_option
def get_releases(url: str, cache: Path, fmt: OutputFormat) -> None:
    """Releases on main and whether their signatures meet the signer threshold."""
    from controller.ops.listing import RELEASE_COLUMNS, release_rows
    from controller.ops.remote import read_remote

    view = read_remote(remote_source(url, cache))
    _emit(release_rows(view), RELEASE_COLUMNS, fmt, "no releases on main")


@get_group.command("release")
@click.argument("app")
@click.argument("version")
@operator_remote_options
@output_option
def get_release(app: str, version: str, url: str, cache: Path, fmt: OutputFormat) -> int:
    """One release: signatures, withdrawal, its rollouts and the robots running it. Exit 1: unknown."""
    from controller.ops.listing import RELEASE_COLUMNS, RUNNING_COLUMNS, release_detail
    from controller.ops.remote import read_remote

    detail = release_detail(read_remote(remote_source(url, cache)), app, version)
    if detail is None:
        click.echo(f"error: no release {app} {version} on main (releases/{app}/{version}.yaml)", err=True)
        return 1
    if fmt != "table":
        click.echo(render_data(detail, fmt))
        return 0
    click.echo(render_table([detail], RELEASE_COLUMNS))
    if detail["withdrawn"] is not None:
        click.echo(f"\nWithdrawn by {detail['withdrawn']['path']}: {detail['withdrawn']['reason']}")
    for rollout in detail["rollouts"]:
        reason = f" ({rollout['reason']})" if rollout["reason"] else ""
        click.echo(
            f"rollout {rollout['name']} generation {rollout['generation']}: {rollout['phase']}{reason}"
        )
    click.echo(f"\nRobots running {app} {version}:")
    click.echo(render_table(detail["robots"], RUNNING_COLUMNS) if detail["robots"] else "  none")
    return 0


@click.command("history")
@click.argument("device")
@click.option(
    "--at",
    "at",
    metavar="T",
    help="What ran on DEVICE at instant T, from which commit, approved by whom, in which wave: "
    "ISO 8601 with a UTC offset (2026-05-04T14:05:00+09:00, ...Z) or an age (-2h, -1d12h).",
)
@click.option(
    "--commit",
    "main_commit",
    metavar="C",
    help="As --at, at the state commit that processed main commit C (an id or abbreviation).",
)
@status_shard_option
@operator_remote_options
@output_option
def history_command(
    device: str,
    at: str | None,
    main_commit: str | None,
    status_shards: tuple[ShardSpec, ...],
    url: str,
    cache: Path,
    fmt: OutputFormat,
) -> int:
    """DEVICE's deployment records over generations and its audit lines, newest first; with --at or
    --commit, what ran on it at one instant and on whose word. Exit 1: unknown robot."""
    from controller.ops.history import AUDIT_COLUMNS, RECORD_COLUMNS, device_history, known_device
    from controller.ops.remote import read_remote

    if at is not None and main_commit is not None:
        raise click.UsageError("--at and --commit exclude each other")
    if status_shards and at is None and main_commit is None:
        raise click.UsageError("--status-shard goes with --at or --commit: records and audit need none")
    source = remote_source(url, cache)
    view = read_remote(source, status_shards_of(status_shards, source) if at or main_commit else ())
    if at is not None or main_commit is not None:
        if not known_device(view, device):
            click.echo(f"error: no robot {device!r} on main, the state branch or a status ref", err=True)
            return 1
        data = _history_at(view, device, at, main_commit)
        if fmt != "table":
            click.echo(render_data(data, fmt))
        else:
            from controller.ops.asof_text import render_history_at

            click.echo(render_history_at(data))
        return 0
    history = device_history(view.repo, view.state, device)
    if device not in view.spec.devices and not history.records and not history.audit:
        click.echo(f"error: no robot {device!r} on main, the state branch or in the audit log", err=True)
        return 1
    data = history.as_json()
    if fmt != "table":
        click.echo(render_data(data, fmt))
        return 0
    click.echo(f"Deployments of {device}:")
    click.echo(render_table(data["records"], RECORD_COLUMNS) if data["records"] else "  none")
    if not history.complete:
        click.echo(f"  (searched the newest {history.commits_searched} state commits; older ones not shown)")
    click.echo(f"\nAudit log lines naming {device}:")
    click.echo(render_table(data["audit"], AUDIT_COLUMNS) if data["audit"] else "  none")
    return 0


def _history_at(view: RemoteView, device: str, at: str | None, main_commit: str | None) -> dict[str, Any]:
    from controller.ops.asof import history_at
    from controller.ops.asof_question import Instant, instant_of_commit, main_commit_id, parse_instant
    from fleetcd.git.refs import status_ref

    now = datetime.now(UTC)
    if main_commit is not None:
        try:
            full = main_commit_id(view.repo, view.main, main_commit)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--commit") from None
        question = instant_of_commit(view.repo, device, full)
    else:
        assert at is not None
        try:
            instant = parse_instant(at, now)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--at") from None
        if instant > now:
            raise click.BadParameter(
                f"{instant.isoformat()} is in the future (now is {now.isoformat(timespec='seconds')}): "
                "history answers for instants that have passed",
                param_hint="--at",
            )
        question = Instant(device, instant)
    if view.status is not None:  # with status shards: the robot's reports from its own shard
        notes = tuple(
            f"status shard {name} did not answer ({why}): reports as last fetched into this cache"
            for name, why in sorted(view.unreachable_shards.items())
        )
        question = replace(
            question, sharded=True, reports_tip=view.status.get(status_ref(device)), notes=notes
        )
    return history_at(view.repo, view.main, question)


@click.command("receipt")
@click.argument("rollout")
@click.option(
    "--generation", type=click.IntRange(min=1), help="Generation [default: the newest with a receipt]."
)
@operator_remote_options
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["markdown", "yaml"]),
    default="markdown",
    show_default=True,
    help="The page for people, or the signed YAML itself.",
)
def receipt_command(rollout: str, generation: int | None, url: str, cache: Path, fmt: str) -> None:
    """Show ROLLOUT's receipt once its controller signature verifies. Exit 1: missing or not verified."""
    from controller.ops.receipt import read_receipt
    from controller.ops.remote import read_remote

    receipt = read_receipt(read_remote(remote_source(url, cache)), rollout, generation)
    click.echo(
        receipt.markdown.rstrip("\n")
        if fmt == "markdown"
        else receipt.yaml_bytes.decode("utf-8").rstrip("\n")
    )
    click.echo(
        f"\nsignature verified: {receipt.path} signed by the controller key {receipt.signer}", err=True
    )
    if not receipt.stored_markdown_matches:
        md = receipt.path.removesuffix(".yaml") + ".md"
        click.echo(
            f"note: {md} on the state branch differs from the signed receipt; shown: the signed one", err=True
        )
