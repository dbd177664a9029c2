"""Customer hooks as a Python plugin: an entry point in the group ``fleetcd.agent.hooks``.

A customer ships a distribution declaring, e.g.::

    [project.entry-points."fleetcd.agent.hooks"]
    rauc = "acme_rauc.fleetcd:RaucHooks"

and names it in agent.yaml (``hooks.plugin: rauc``). The entry point is an object, module or class
(instantiated without arguments) with any of the five hook methods. A plugin that is missing,
ambiguous, fails to load or has none of the methods stops the agent with a
:class:`~fleetcd.errors.SetupError`: a robot must not silently update without its updater.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from fleetcd.errors import SetupError

ENTRY_POINT_GROUP = "fleetcd.agent.hooks"
HOOK_NAMES = ("install_artifact", "run_preflight", "switch_slot", "report_health", "rollback")


def load_plugin(name: str) -> object:
    """The hook object the entry point ``name`` of :data:`ENTRY_POINT_GROUP` names."""
    found = list(entry_points(group=ENTRY_POINT_GROUP, name=name))
    where = f"hook plugin {name!r} (hooks.plugin in agent.yaml)"
    if not found:
        raise SetupError(f"{where} is not installed: no entry point {name!r} in group {ENTRY_POINT_GROUP}")
    if len(found) > 1:
        values = ", ".join(sorted(ep.value for ep in found))
        raise SetupError(f"{where} is ambiguous: {len(found)} entry points carry that name ({values})")
    entry = found[0]
    try:
        loaded = entry.load()
        plugin: object = loaded() if isinstance(loaded, type) else loaded
    except (Exception, SystemExit) as exc:  # a plugin's sys.exit() is its failure, not the agent's exit
        raise SetupError(f"{where} ({entry.value}) failed to load: {type(exc).__name__}: {exc}") from exc
    if not any(callable(getattr(plugin, hook, None)) for hook in HOOK_NAMES):
        raise SetupError(f"{where} ({entry.value}) has none of the hook methods {', '.join(HOOK_NAMES)}")
    return plugin
