"""What ``fleetcd sim`` was asked (:class:`Rehearsal`) and :func:`rehearse`, which runs it.

The rehearsal never writes to the fleet repository: its main (or ``ref``) is copied into a scratch
bare repository that the controller and the virtual robots then share, starting from a fresh state
branch — robots begin with nothing installed. ``in_place`` runs against the repository itself (for a
throwaway fleet); ``keep`` keeps the scratch repository with its state branch, ``STATUS.md`` and
``status.html`` for exploring. Place in the flow: the CLI (:mod:`controller.cli.sim`) builds a
:class:`Rehearsal` from its options, :func:`rehearse` turns it into :class:`SimSettings` and calls
:func:`controller.sim.run.run_simulation`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from controller.sim.report import SimReport
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


@dataclass(frozen=True)
class Rehearsal:
    """One ``fleetcd sim`` run as asked for; field names are the CLI's options (docs/cli.md)."""

    url: str  # the fleet repository (path or URL); copied, never written unless in_place
    gnupghome: Path  # the controller's secret key
    ref: str = "main"  # branch or ref of url to rehearse as main
    robots: int | None = None  # the first N active devices; None: all
    offline_rate: float = 0.0
    failure_rate: float = 0.0
    latency_ms: float = 0.0
    poll_seconds: float | None = None  # None: fleet.yaml's poll_seconds
    jitter_percent: float = DEFAULT_JITTER_PERCENT
    apply_seconds: float = DEFAULT_APPLY_SECONDS
    controller_seconds: float = DEFAULT_CONTROLLER_SECONDS
    seed: int = 0
    virtual_time: bool | None = None  # None: virtual from VIRTUAL_TIME_FROM_ROBOTS robots on
    until_done: bool = False
    max_seconds: float = DEFAULT_MAX_SECONDS
    skip_noop_polls: bool = False
    flat_refs: bool = False
    in_place: bool = False
    keep: Path | None = None  # keep the rehearsal in this directory

    def server(self, workdir: Path) -> str:
        """The repository the controller and the robots share: url itself or its scratch copy."""
        return self.url if self.in_place else str(workdir / SCRATCH_SERVER)

    def settings(self, server: str, workdir: Path) -> SimSettings:
        return SimSettings(
            url=server,
            gnupghome=self.gnupghome,
            workdir=workdir,
            robots=self.robots,
            offline_rate=self.offline_rate,
            failure_rate=self.failure_rate,
            latency_seconds=self.latency_ms / 1000.0,
            poll_seconds=self.poll_seconds,
            jitter_percent=self.jitter_percent,
            apply_seconds=self.apply_seconds,
            controller_seconds=self.controller_seconds,
            seed=self.seed,
            virtual_time=self.virtual_time
            if self.virtual_time is not None
            else (self.robots or 0) >= VIRTUAL_TIME_FROM_ROBOTS,
            until_done=self.until_done,
            max_seconds=self.max_seconds,
            namespaces=not self.flat_refs,
            skip_noop_polls=self.skip_noop_polls,
        )


def copy_main(url: str, ref: str, workdir: Path) -> Path:
    """A bare repository in ``workdir`` whose main is ``ref`` of ``url``; nothing else is copied."""
    full = ref if ref.startswith("refs/") else f"refs/heads/{ref}"
    server = workdir / SCRATCH_SERVER
    found = fetch(open_or_init_bare(server), url, [f"+{full}:{MAIN_BRANCH}"])
    if MAIN_BRANCH not in found:
        raise SetupError(f"{url} has no {full} to rehearse")
    return server


def rehearse(rehearsal: Rehearsal, progress: Callable[[str], None] | None = None) -> SimReport:
    """Run ``rehearsal`` in ``keep`` or a temporary directory (removed afterwards)."""
    with ExitStack() as stack:
        if rehearsal.keep is not None:
            rehearsal.keep.mkdir(parents=True, exist_ok=True)
            workdir = rehearsal.keep
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleetcd-sim-")))
        server = (
            rehearsal.url if rehearsal.in_place else str(copy_main(rehearsal.url, rehearsal.ref, workdir))
        )
        return run_simulation(rehearsal.settings(server, workdir), progress=progress)
