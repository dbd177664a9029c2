"""``fleetcd sim``: rehearse the fleet's rollouts with virtual robots — build a Rehearsal, run, print.

Thin by design (STYLE 8): the options become one :class:`~controller.sim.rehearsal.Rehearsal`
(:func:`rehearsal_options`), :func:`~controller.sim.rehearsal.rehearse` runs it. Exit codes: 0 ran
(whatever the rollouts did), 1 the controller stalled on invalid content, 4/5 setup or git problems.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from controller.cli.options import FiniteRange, controller_gnupghome_option, stacked
from controller.sim.rehearsal import Rehearsal, rehearse
from controller.sim.settings import (
    DEFAULT_APPLY_SECONDS,
    DEFAULT_CONTROLLER_SECONDS,
    DEFAULT_JITTER_PERCENT,
    DEFAULT_MAX_SECONDS,
    VIRTUAL_TIME_FROM_ROBOTS,
)

# One option per Rehearsal field, in the order `fleetcd sim --help` lists them.
_REHEARSAL_OPTIONS = stacked(
    click.option(
        "--repo", "url", required=True, help="Fleet repository (path or URL); copied, never written."
    ),
    click.option(
        "--ref", default="main", show_default=True, help="Branch or ref of --repo to rehearse as main."
    ),
    click.option(
        "--robots", type=click.IntRange(1), help="Simulate the first N active devices [default: all]."
    ),
    controller_gnupghome_option,
    click.option("--offline-rate", type=FiniteRange(0, 1), default=0.0, show_default=True),
    click.option("--failure-rate", type=FiniteRange(0, 1), default=0.0, show_default=True),
    click.option("--latency-ms", type=FiniteRange(0, 600_000), default=0.0, show_default=True),
    click.option("--poll-seconds", type=FiniteRange(1, 86_400), help="[default: fleet.yaml's poll_seconds]"),
    click.option(
        "--jitter-percent", type=FiniteRange(0, 99), default=DEFAULT_JITTER_PERCENT, show_default=True
    ),
    click.option(
        "--apply-seconds",
        type=FiniteRange(0.001, 86_400),
        default=DEFAULT_APPLY_SECONDS,
        show_default=True,
    ),
    click.option(
        "--controller-seconds",
        type=FiniteRange(1, 3600),
        default=DEFAULT_CONTROLLER_SECONDS,
        show_default=True,
        help="Between reconciles (one runs at the merge).",
    ),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option(
        "--virtual-time/--real-time",
        default=None,
        help=f"Simulated clock: soaks pass in seconds [default: from {VIRTUAL_TIME_FROM_ROBOTS} robots on].",
    ),
    click.option(
        "--until-done", is_flag=True, help="Stop once every rollout finished and every robot is in sync."
    ),
    click.option(
        "--max-seconds", type=FiniteRange(1, 30 * 86_400), default=DEFAULT_MAX_SECONDS, show_default=True
    ),
    click.option(
        "--skip-noop-polls", is_flag=True, help="Count polls that would fetch nothing instead of running git."
    ),
    click.option(
        "--flat-refs",
        is_flag=True,
        help="The controller writes refs/fleetcd/desired/<robot> (no namespaces).",
    ),
    click.option(
        "--in-place", is_flag=True, help="Write to --repo itself (a throwaway fleet) instead of a copy."
    ),
    click.option(
        "--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the rehearsal in DIR."
    ),
)


def rehearsal_options(command: Callable[[Rehearsal, str], int]) -> Callable[..., int]:
    """The rehearsal's options, handed to ``command`` as one :class:`Rehearsal` (plus ``--output``)."""

    @functools.wraps(command)
    def collect(fmt: str, **options: Any) -> int:
        return command(Rehearsal(**options), fmt)

    return _REHEARSAL_OPTIONS(collect)


@click.command("sim")
@rehearsal_options
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def sim_command(rehearsal: Rehearsal, fmt: str) -> int:
    """Rehearse the fleet's rollouts with N virtual robots (real git, real gpg, the real controller)."""
    report = rehearse(rehearsal, progress=click.echo if fmt == "text" else None)
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(report.render_text())
        if rehearsal.keep is not None:
            server, robots = rehearsal.server(rehearsal.keep), rehearsal.keep / "robots"
            click.echo(f"kept: {server} (state branch, STATUS.md, status.html); robots in {robots}")
    return 1 if report.stalled_reason else 0
