"""How long each converge step may take before the agent counts as stuck: PURE arithmetic on the
release, the robot's settings and the executor's download bounds.

:mod:`agent.converge.apply` declares these budgets to :class:`agent.liveness.Liveness` before each
step, so the watchdog keeps being pinged through a long but healthy step and stops once the step
overruns what it may take. Each budget is what bounds the step already — the downloader's own
derived deadline per artifact, the watch window plus every probe's worst case, hook and pre-flight
timeouts — never a second guess at it.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.fetch import DownloadSettings
from agent.liveness import LivenessSettings
from fleetcd.models.agent import AgentConfig, ExecHook
from fleetcd.models.release import ContainerImage, Probe, Release

HOOK_NAMES = ("install_artifact", "run_preflight", "switch_slot", "report_health", "rollback")


def fetch_seconds(release: Release, download: DownloadSettings, liveness: LivenessSettings) -> float:
    """Downloading (or re-hashing) every artifact one after another, each within its own deadline."""
    total = 0.0
    for artifact in release.artifacts:
        if isinstance(artifact, ContainerImage):
            total += liveness.image_pull_seconds
        else:
            total += download.deadline_for(artifact.size)
    return total


def probes_seconds(probes: Sequence[Probe]) -> float:
    """The worst case of running ``probes`` to the end: every attempt times out, then waits."""
    return sum(
        p.initial_delay_seconds + p.attempts * (p.timeout_seconds + p.interval_seconds) for p in probes
    )


def hook_seconds(config: AgentConfig, name: str) -> float:
    """An executable hook's timeout; 0 for none or a plugin (which the default budget covers)."""
    hook = getattr(config.hooks, name, None)
    return float(hook.timeout_seconds) if isinstance(hook, ExecHook) else 0.0


def gates_seconds(config: AgentConfig, names: Sequence[str]) -> float:
    total = 0.0
    for name in names:
        check = config.gates.checks.get(name)
        total += float(getattr(check, "timeout_seconds", 0))
    return total


def verifying_seconds(
    release: Release,
    gates: Sequence[str],
    config: AgentConfig,
    download: DownloadSettings,
    liveness: LivenessSettings,
) -> float:
    return fetch_seconds(release, download, liveness) + gates_seconds(config, gates)


def applying_seconds(
    release: Release, config: AgentConfig, download: DownloadSettings, liveness: LivenessSettings
) -> float:
    """Pre-flight steps and hooks, then installing (unpacking is bounded like re-reading the
    download), then the migrations — each, and its rollback, should the last one fail."""
    steps = sum(step.timeout_seconds for step in release.preflight)
    steps += sum(m.timeout_seconds * (1 if m.rollback is None else 2) for m in release.migrations)
    hooks = hook_seconds(config, "run_preflight") + hook_seconds(config, "install_artifact")
    return steps + hooks + fetch_seconds(release, download, liveness) + liveness.default_step_seconds


def switching_seconds(config: AgentConfig, liveness: LivenessSettings) -> float:
    return hook_seconds(config, "switch_slot") + liveness.default_step_seconds


def watching_seconds(release: Release, config: AgentConfig) -> float:
    """The window, then every probe's remaining attempts (the window never cuts a probe short)."""
    health = release.health
    return health.watch_seconds + probes_seconds(health.probes) + hook_seconds(config, "report_health")


def rolling_back_seconds(
    release: Release | None, config: AgentConfig, liveness: LivenessSettings, *, undo_seconds: float = 0.0
) -> float:
    """The rollback hook and checks, after ``undo_seconds`` of migration rollbacks (from the ledger)."""
    checks = probes_seconds(release.rollback.checks) if release is not None else 0.0
    return undo_seconds + hook_seconds(config, "rollback") + checks + liveness.default_step_seconds
