"""Customer hooks (Fleet Release's adapter): plug an A/B image updater in without forking the agent.

``converge`` calls the five hooks of :class:`Hooks` at their steps:

==================  ==========================  =============================================
hook                when                        answer
==================  ==========================  =============================================
run_preflight       before install              True/None: ok; False or raises: not ok
install_artifact    install to inactive slot    True: handled; False/None: the executor does it
switch_slot         switch                      True: handled; False/None: the executor does it
report_health       after the watch window      True/False: healthy or not; None: no opinion
rollback            roll back                   True: handled; False/None: the executor does it
==================  ==========================  =============================================

No answer is read by truthiness: anything but ``True``, ``False`` or ``None`` (the string
``"no"``, ``1``, a dict) is malformed and fails closed, naming what came back. From
``run_preflight`` it is "not ok" like ``False`` (the install does not start); from
``report_health`` it counts as unhealthy (a :class:`~agent.errors.HealthFailed`: a plugin that
answers in the wrong type must not pass a version it may be vetoing); from ``install_artifact``,
``switch_slot`` and ``rollback`` it is a :class:`~agent.errors.HookFailed`, as if the hook had
raised (the agent must not believe a step happened that the plugin did not confirm, nor run the
executor's step over a plugin's unknown work).

Each hook is an executable (:mod:`agent.hooks.exec`, set per hook in agent.yaml) or a method of a
Python plugin (:mod:`agent.hooks.plugin`); an executable wins over the plugin's method, and a hook
neither provides is "not handled". Whatever a hook raises or a non-0/3 exit becomes
:class:`~agent.errors.HookFailed` (an ApplyError: the deployment rolls back).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from agent.errors import HealthFailed, HookFailed
from agent.hooks.exec import run_exec_hook
from agent.hooks.plugin import HOOK_NAMES, load_plugin
from fleetcd.errors import SetupError
from fleetcd.models.agent import ExecHook, HookSettings

__all__ = ["HOOK_NAMES", "HookContext", "Hooks", "load_hooks"]

ANSWER_SHOWN_CHARS = 64  # of a malformed string answer, in the robot's status


@dataclass(frozen=True)
class HookContext:
    """What a hook is told about the deployment it acts on (JSON on an executable's stdin)."""

    device: str
    app: str
    version: str
    previous: str | None
    deployment_id: str
    phase: str  # the converge state the hook runs in, e.g. "applying", "watching", "rolling_back"
    artifacts: Mapping[str, Path]  # artifact name -> downloaded, digest-checked file
    app_dir: Path
    # mcu_firmware artifact name -> its release's ``target`` (which MCU the adapter's hook flashes)
    targets: Mapping[str, str] = field(default_factory=dict)

    def as_json(self, hook: str) -> bytes:
        document = {
            "hook": hook,
            "device": self.device,
            "app": self.app,
            "version": self.version,
            "previous": self.previous,
            "deployment_id": self.deployment_id,
            "phase": self.phase,
            "artifacts": {name: str(path) for name, path in sorted(self.artifacts.items())},
            "app_dir": str(self.app_dir),
            "targets": dict(sorted(self.targets.items())),
        }
        return json.dumps(document, sort_keys=True).encode("utf-8") + b"\n"


class Hooks:
    """The robot's hooks; ``Hooks()`` has none (every hook answers "not handled")."""

    def __init__(
        self,
        *,
        plugin: object | None = None,
        plugin_name: str | None = None,
        executables: Mapping[str, ExecHook] | None = None,
    ) -> None:
        self._plugin = plugin
        self._plugin_name = plugin_name or type(plugin).__name__
        self._executables = dict(executables or {})

    def install_artifact(self, ctx: HookContext) -> bool:
        return self._handled("install_artifact", ctx)

    def run_preflight(self, ctx: HookContext) -> None:
        """Returns when the hook says ok (True or None); raises HookFailed when it says otherwise."""
        answer = self._call("run_preflight", ctx)
        if answer is None or answer is True:
            return
        detail = f"plugin {self._plugin_name!r} answered False: not ok"
        if answer is not False:
            detail = (
                f"plugin {self._plugin_name!r} answered {_described(answer)}, not True, False or None: "
                "a malformed answer counts as not ok"
            )
        raise HookFailed("run_preflight", detail)

    def switch_slot(self, ctx: HookContext) -> bool:
        return self._handled("switch_slot", ctx)

    def report_health(self, ctx: HookContext) -> bool | None:
        """The hook's verdict (None: no opinion); a malformed answer raises HealthFailed."""
        answer = self._call("report_health", ctx)
        if answer is None or isinstance(answer, bool):
            return answer
        raise HealthFailed(
            "hook",
            f"the report_health hook of plugin {self._plugin_name!r} answered {_described(answer)}, "
            "not True, False or None: a malformed answer counts as unhealthy",
        )

    def rollback(self, ctx: HookContext) -> bool:
        return self._handled("rollback", ctx)

    def _handled(self, hook: str, ctx: HookContext) -> bool:
        """A step hook's answer: True handled, False or None not handled (the executor does it);
        anything else raises HookFailed, as if the hook had raised (it did not say what it did)."""
        answer = self._call(hook, ctx)
        if answer is None or isinstance(answer, bool):
            return bool(answer)
        raise HookFailed(
            hook,
            f"plugin {self._plugin_name!r} answered {_described(answer)}, not True, False or None: "
            "a malformed answer counts as a failure of the step",
        )

    def _call(self, hook: str, ctx: HookContext) -> object:
        """The hook's answer; None when nobody handles it (exit 3 of an executable too)."""
        spec = self._executables.get(hook)
        if spec is not None:
            return run_exec_hook(hook, spec, ctx.as_json(hook)) or None
        method = getattr(self._plugin, hook, None)
        if not callable(method):
            return None
        try:
            answer: object = method(ctx)
        # SystemExit too: a plugin's sys.exit() must fail the hook (and roll back), not stop the
        # agent mid-deployment; KeyboardInterrupt (the operator) still goes through.
        except (Exception, SystemExit) as exc:
            detail = f"plugin {self._plugin_name!r} raised {type(exc).__name__}: {exc}"
            raise HookFailed(hook, detail) from exc
        return answer


def _described(answer: object) -> str:
    """What a plugin answered, for the robot's status: a string's start, else only its type (an
    arbitrary object's repr may be huge, raise, or run the plugin's code again)."""
    kind = type(answer).__name__
    if isinstance(answer, str):
        shown = answer[:ANSWER_SHOWN_CHARS] + ("..." if len(answer) > ANSWER_SHOWN_CHARS else "")
        return f"the {kind} {shown!r}"
    return f"a value of type {kind}"


def load_hooks(settings: HookSettings) -> Hooks:
    """The hooks agent.yaml configures; :class:`SetupError` when one cannot be used as configured."""
    executables: dict[str, ExecHook] = {}
    for hook in HOOK_NAMES:
        spec: ExecHook | None = getattr(settings, hook)
        if spec is None:
            continue
        if not PurePath(spec.exec[0]).is_absolute():
            raise SetupError(
                f"agent.yaml hooks.{hook}.exec[0]: {spec.exec[0]!r} is not an absolute path "
                "(hooks run without a shell or PATH lookup)"
            )
        executables[hook] = spec
    plugin = None if settings.plugin is None else load_plugin(settings.plugin)
    return Hooks(plugin=plugin, plugin_name=settings.plugin, executables=executables)
