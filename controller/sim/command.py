"""``fleetcd sim``: the CLI of the fleet simulator — builds :class:`SimSettings`, runs, prints.

Thin by design (STYLE 8). The rehearsal never writes to ``--repo``: its main (or ``--ref``) is
copied into a scratch bare repository that the controller and the virtual robots then share,
starting from a fresh state branch — robots begin with nothing installed. ``--in-place`` runs
against ``--repo`` itself (for a throwaway fleet); ``--keep DIR`` keeps the scratch repository with
its state branch, ``STATUS.md`` and ``status.html`` for exploring. Exit codes: 0 ran (whatever
the rollouts did), 1 the controller stalled on invalid content, 4/5 setup or git problems.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import ExitStack
from pathlib import Path

import click

from controller.commands import gnupghome_option
from controller.sim.run import run_simulation
from controller.sim.settings import (
    DEFAULT_APPLY_SECONDS,
    DEFAULT_CONTROLLER_SECONDS,
    DEFAULT_JITTER_PERCENT,
    DEFAULT_MAX_SECONDS,
    VIRTUAL_TIME_FROM_ROBOTS,
    SimSettings,
)
from fleetcd.errors import SetupError
from fleetcd.git.refs import MAIN_BRANCH
from fleetcd.git.remote import fetch
from fleetcd.git.repo import open_or_init_bare

SCRATCH_SERVER = "server.git"


def copy_main(url: str, ref: str, workdir: Path) -> Path:
    """A bare repository in ``workdir`` whose main is ``ref`` of ``url``; nothing else is copied."""
    full = ref if ref.startswith("refs/") else f"refs/heads/{ref}"
    server = workdir / SCRATCH_SERVER
    found = fetch(open_or_init_bare(server), url, [f"+{full}:{MAIN_BRANCH}"])
    if MAIN_BRANCH not in found:
        raise SetupError(f"{url} has no {full} to rehearse")
    return server


@click.command("sim")
@click.option("--repo", "url", required=True, help="Fleet repository (path or URL); copied, never written.")
@click.option("--ref", default="main", show_default=True, help="Branch or ref of --repo to rehearse as main.")
@click.option("--robots", type=click.IntRange(1), help="Simulate the first N active devices [default: all].")
@gnupghome_option
@click.option("--offline-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--failure-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--latency-ms", type=click.FloatRange(0, 600_000), default=0.0, show_default=True)
@click.option("--poll-seconds", type=click.FloatRange(1, 86_400), help="[default: fleet.yaml's poll_seconds]")
@click.option(
    "--jitter-percent", type=click.FloatRange(0, 99), default=DEFAULT_JITTER_PERCENT, show_default=True
)
@click.option(
    "--apply-seconds", type=click.FloatRange(0.001, 86_400), default=DEFAULT_APPLY_SECONDS, show_default=True
)
@click.option(
    "--controller-seconds",
    type=click.FloatRange(1, 3600),
    default=DEFAULT_CONTROLLER_SECONDS,
    show_default=True,
    help="Between reconciles (one runs at the merge).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--virtual-time/--real-time",
    default=None,
    help=f"Simulated clock: soaks pass in seconds [default: from {VIRTUAL_TIME_FROM_ROBOTS} robots on].",
)
@click.option(
    "--until-done", is_flag=True, help="Stop once every rollout finished and every robot is in sync."
)
@click.option(
    "--max-seconds", type=click.FloatRange(1, 30 * 86_400), default=DEFAULT_MAX_SECONDS, show_default=True
)
@click.option(
    "--skip-noop-polls", is_flag=True, help="Count polls that would fetch nothing instead of running git."
)
@click.option(
    "--flat-refs", is_flag=True, help="The controller writes refs/fleetcd/desired/<robot> (no namespaces)."
)
@click.option(
    "--in-place", is_flag=True, help="Write to --repo itself (a throwaway fleet) instead of a copy."
)
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the rehearsal in DIR.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def sim_command(
    url: str,
    ref: str,
    robots: int | None,
    gnupghome: Path,
    offline_rate: float,
    failure_rate: float,
    latency_ms: float,
    poll_seconds: float | None,
    jitter_percent: float,
    apply_seconds: float,
    controller_seconds: float,
    seed: int,
    virtual_time: bool | None,
    until_done: bool,
    max_seconds: float,
    skip_noop_polls: bool,
    flat_refs: bool,
    in_place: bool,
    keep: Path | None,
    fmt: str,
) -> int:
    """Rehearse the fleet's rollouts with N virtual robots (real git, real gpg, the real controller)."""
    with ExitStack() as stack:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            workdir = keep
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleetcd-sim-")))
        server = url if in_place else str(copy_main(url, ref, workdir))
        settings = SimSettings(
            url=server,
            gnupghome=gnupghome,
            workdir=workdir,
            robots=robots,
            offline_rate=offline_rate,
            failure_rate=failure_rate,
            latency_seconds=latency_ms / 1000.0,
            poll_seconds=poll_seconds,
            jitter_percent=jitter_percent,
            apply_seconds=apply_seconds,
            controller_seconds=controller_seconds,
            seed=seed,
            virtual_time=virtual_time
            if virtual_time is not None
            else (robots or 0) >= VIRTUAL_TIME_FROM_ROBOTS,
            until_done=until_done,
            max_seconds=max_seconds,
            namespaces=not flat_refs,
            skip_noop_polls=skip_noop_polls,
        )
        report = run_simulation(settings, progress=click.echo if fmt == "text" else None)
        if fmt == "json":
            click.echo(json.dumps(report.as_dict(), indent=2))
        else:
            click.echo(report.render_text())
            if keep is not None:
                click.echo(
                    f"kept: {server} (state branch, STATUS.md, status.html); robots in {workdir / 'robots'}"
                )
    return 1 if report.stalled_reason else 0
