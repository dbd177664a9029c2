"""What converging one app works with: its assignment from the verified bundle, and the robot's
settings and outside world (:class:`ConvergeContext`). Built by :mod:`agent.loop` each cycle, used by
:mod:`agent.converge.apply` (the orchestrator) and :mod:`agent.converge.steps` (what each state does).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from agent.configfiles.write import config_path, render, sha256_hex
from agent.converge.configs import load_ledger
from agent.converge.fallback import Fallback
from agent.converge.machine import DesiredApp
from agent.converge.rollback import fallback_for
from agent.errors import CorruptState
from agent.executors.base import Executor
from agent.fetch import DownloadSettings
from agent.health.clock import Clock
from agent.hooks import Hooks
from agent.liveness import Liveness
from agent.paths import AgentPaths
from agent.report.progress import ProgressReporter
from agent.state.journal import JournalEntry
from fleetcd.desired import BundleDeployment, VerifiedBundle
from fleetcd.errors import ApplyError, InvalidContent, SetupError
from fleetcd.loading.documents import load_document
from fleetcd.models.agent import AgentConfig
from fleetcd.models.release import Release
from fleetcd.models.rollout import Rollout


@dataclass(frozen=True)
class Assignment:
    """One app's deployment from the verified bundle, with its parsed release and gate names."""

    deployment: BundleDeployment
    release: Release
    gates: tuple[str, ...]  # the release's gates, then the rollout's
    config_current: bool = True  # what this robot wrote for the app is what the bundle asks

    @property
    def desired(self) -> DesiredApp:
        d = self.deployment
        return DesiredApp(d.deployment_id, d.version, d.action, d.not_before, self.config_current)


def config_current(paths: AgentPaths, app: str, deployment: BundleDeployment, release: Release) -> bool:
    """Whether the config file this robot wrote for ``app`` (its ledger) holds the bytes ``deployment``
    asks for: the merged values rendered for ``release``, or no file when it carries no config."""
    try:
        ledger = load_ledger(paths.config_hashes)
    except CorruptState:  # repaired later this cycle, from the verified desired state: adopt as before
        return True
    written = {k: v for k, v in ledger.files.items() if v.app == app}
    if release.config is None or deployment.config is None:
        return not written
    wanted = render(deployment.config, release.config)
    try:
        path = str(config_path(paths.apps_dir / app, release.config))
    except ApplyError:  # a path the switch refuses too: that deployment fails there, not here
        return True
    return set(written) == {path} and written[path].sha256 == sha256_hex(wanted)


def assignments(verified: VerifiedBundle, paths: AgentPaths | None = None) -> dict[str, Assignment]:
    """{app: Assignment} of a verified bundle (its rollouts were verified with it); with ``paths``,
    whether each app's written config is the bundle's (a config-only change otherwise)."""
    out: dict[str, Assignment] = {}
    for d in verified.bundle.deployments:
        release = verified.releases[d.deployment_id]
        try:
            raw = base64.b64decode(d.rollout_b64)
            rollout = load_document(d.rollout_path, raw, Rollout, schema=False).model
        except InvalidContent as exc:  # verify_bundle parsed it already; keep the error honest anyway
            raise SetupError(f"{d.rollout_path}: verified rollout no longer parses: {exc}") from exc
        gates = tuple(dict.fromkeys([*release.gates, *rollout.gates]))
        current = True if paths is None else config_current(paths, d.app, d, release)
        out[d.app] = Assignment(d, release, gates, current)
    return out


@dataclass
class ConvergeContext:
    """What converging needs besides the app: the robot's settings and the outside world."""

    config: AgentConfig
    paths: AgentPaths
    executor: Executor
    hooks: Hooks
    clock: Clock  # the watch window's waits
    now: Callable[[], datetime]  # wall clock for journal times and reports
    checkpoint: Callable[[str], None] = field(default=lambda _name: None)
    liveness: Liveness = field(default_factory=Liveness.disabled)  # the watchdog's view of progress
    # Every app's assignment of this cycle: a release's ``requires`` is checked against the others.
    assignments: Mapping[str, Assignment] = field(default_factory=dict)
    drifted: frozenset[str] = frozenset()  # apps whose running code drifted and was left so (report)
    # Pushes how far a download or health watch is while it runs (agent.report.progress).
    progress: ProgressReporter = field(default_factory=ProgressReporter.disabled)

    def fallback(self, app: str, entry: JournalEntry | None, assignment: Assignment | None) -> Fallback:
        """The rollback policy of ``entry``'s release, when the bundle still carries it."""
        release = assignment.release if assignment is not None and owns(assignment, entry) else None
        return fallback_for(self.paths, self.executor, app, entry, release)

    @property
    def download_settings(self) -> DownloadSettings:
        """The executor's download bounds, when it has them (budgets derive from its deadlines)."""
        found = getattr(self.executor, "download_settings", None)
        return found if isinstance(found, DownloadSettings) else DownloadSettings()


def owns(assignment: Assignment | None, entry: JournalEntry | None) -> bool:
    """Whether ``assignment`` is the deployment ``entry`` records (so its release applies to it)."""
    if assignment is None or entry is None:
        return False
    return assignment.deployment.deployment_id == entry.deployment_id
