"""Customer hooks: real executables fed JSON on stdin, and real Python plugins found by entry point.

The plugins live in a throwaway distribution (a ``*.dist-info`` with ``entry_points.txt`` and a
module) put on ``sys.path``, so ``importlib.metadata`` finds them exactly as it would find a
customer's installed package. One of them is a toy A/B image updater taking over install and
switch, the way a customer plugs RAUC or SWUpdate in without forking the agent.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.converge.steps import artifact_targets
from agent.errors import HookFailed
from agent.hooks import HookContext, Hooks, load_hooks
from agent.state.journal import JournalEntry
from fleetcd.errors import ApplyError, SetupError
from fleetcd.models.agent import HookSettings
from fleetcd.models.release import Release
from fleetcd.reports import DeploymentReport
from tests.apps import AppBehaviour
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import AgentWorld

PLUGIN_MODULE = "fleetcd_test_hookplugins"
FILE = {"url": "https://artifacts.example/fw.bin", "sha256": "a" * 64, "size": 1024}

PLUGIN_SOURCE = '''
from pathlib import Path


class ABUpdater:
    """A toy A/B updater: the image goes to the inactive slot, the switch flips the boot slot."""

    def _slots(self, ctx):
        slots = Path(ctx.app_dir) / "slots"
        slots.mkdir(parents=True, exist_ok=True)
        boot = slots / "boot"
        return slots, boot, (boot.read_text() if boot.exists() else "a")

    def install_artifact(self, ctx):
        slots, _boot, active = self._slots(ctx)
        inactive = "b" if active == "a" else "a"
        (slots / inactive).write_bytes(Path(ctx.artifacts["rootfs"]).read_bytes())
        return True

    def switch_slot(self, ctx):
        _slots, boot, active = self._slots(ctx)
        boot.write_text("b" if active == "a" else "a")
        return True


class Opinionated:
    def report_health(self, ctx):
        return False

    def run_preflight(self, ctx):
        raise RuntimeError("battery at 12 %, need 30 %")


class Nothing:
    pass


class Unloadable:
    def __init__(self):
        raise OSError("/dev/mmcblk0 not found")
'''

ENTRY_POINTS = f"""
[fleetcd.agent.hooks]
ab = {PLUGIN_MODULE}:ABUpdater
opinionated = {PLUGIN_MODULE}:Opinionated
nothing = {PLUGIN_MODULE}:Nothing
unloadable = {PLUGIN_MODULE}:Unloadable
"""


def installed_plugins(site: Path, module: str, source: str, name: str, entry_points: str) -> Iterator[Path]:
    """A distribution ``name`` in ``site`` holding ``module`` and its ``entry_points``, importable
    while the generator is open (a module-scoped fixture's body)."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield site
    sys.path.remove(str(site))
    sys.modules.pop(module, None)


@pytest.fixture(scope="module", autouse=True)
def plugin_distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    site = tmp_path_factory.mktemp("site")
    yield from installed_plugins(site, PLUGIN_MODULE, PLUGIN_SOURCE, "fleetcd-test-hookplugins", ENTRY_POINTS)


@pytest.fixture
def ctx(tmp_path: Path) -> HookContext:
    rootfs = tmp_path / "downloads" / "rootfs.img"
    rootfs.parent.mkdir()
    rootfs.write_bytes(b"ext4 image v2")
    return HookContext(
        device="r2d2",
        app="nav",
        version="2.0.0",
        previous="1.9.0",
        deployment_id="dep-1",
        phase="applying",
        artifacts={"rootfs": rootfs},
        app_dir=tmp_path / "apps" / "nav",
    )


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def exec_hooks(**hooks: dict[str, Any]) -> Hooks:
    return load_hooks(HookSettings.model_validate(hooks))


class Truthy:
    """A plugin's answer that says it is true, and whose repr would run plugin code (and fail)."""

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        raise RuntimeError("repr must not be called")


@contextmanager
def second_version_with_plugin(
    tmp_path: Path,
    keys: KeyFactory,
    artifacts: ArtifactServer,
    plugin: str,
    behaviour: AppBehaviour = "healthy",
) -> Iterator[tuple[AgentWorld, JournalEntry, DeploymentReport]]:
    """A real agent loading the entry-point ``plugin`` runs 1.0.0 (the plugin lets it through), then
    one pass over 2.0.0 (``behaviour``): the world, the agent's entry for 2.0.0 and its report of it."""
    world = AgentWorld.create(tmp_path / "w", keys, artifacts, agent={"hooks": {"plugin": plugin}})
    try:
        world.publish("1.0.0")
        assert world.once().error is None
        assert world.answer("1.0.0") == "1.0.0"
        world.reconcile()
        world.publish("2.0.0", behaviour)

        result = world.once()

        entry = world.entry()
        assert entry is not None and entry.version == "2.0.0"
        assert result.report is not None
        [deployment] = [d for d in result.report.deployments if d.deployment_id == entry.deployment_id]
        yield world, entry, deployment
    finally:
        world.close()


# --- executables ----------------------------------------------------------------------------------


def test_executable_hook_gets_the_context_as_json_on_stdin(tmp_path: Path, ctx: HookContext) -> None:
    seen = tmp_path / "seen.json"
    hook = script(tmp_path, "install", f'cat > "{seen}"\nexit 0\n')
    assert exec_hooks(install_artifact={"exec": [hook]}).install_artifact(ctx) is True
    document = json.loads(seen.read_text())
    assert document == {
        "hook": "install_artifact",
        "device": "r2d2",
        "app": "nav",
        "version": "2.0.0",
        "previous": "1.9.0",
        "deployment_id": "dep-1",
        "phase": "applying",
        "artifacts": {"rootfs": str(ctx.artifacts["rootfs"])},
        "app_dir": str(ctx.app_dir),
        "targets": {},
    }


def test_the_install_hook_is_told_which_mcu_each_firmware_artifact_is_for(tmp_path: Path) -> None:
    """``mcu_firmware.target`` is read by nobody in fleetcd but the adapter's hook: it must reach it."""
    release = Release.model_validate(
        {
            "apiVersion": "fleetcd.dev/v1",
            "kind": "Release",
            "app": "drive",
            "version": "3.1.0",
            "artifacts": [
                {"kind": "mcu_firmware", "name": "motor-fw", "target": "motor-ctl", **FILE},
                {"kind": "mcu_firmware", "name": "bms-fw", "target": "bms", **FILE},
                {"kind": "app_tarball", "name": "app", **FILE},
            ],
        }
    )
    targets = artifact_targets(release)
    assert targets == {"motor-fw": "motor-ctl", "bms-fw": "bms"}
    assert artifact_targets(None) == {}
    seen = tmp_path / "seen.json"
    hook = script(tmp_path, "install", f'cat > "{seen}"\nexit 0\n')
    context = HookContext(
        device="r2d2",
        app="drive",
        version="3.1.0",
        previous=None,
        deployment_id="dep-2",
        phase="applying",
        artifacts={},
        app_dir=tmp_path / "apps" / "drive",
        targets=targets,
    )
    assert exec_hooks(install_artifact={"exec": [hook]}).install_artifact(context) is True
    assert json.loads(seen.read_text())["targets"] == {"bms-fw": "bms", "motor-fw": "motor-ctl"}


@pytest.mark.parametrize(
    ("hook", "code", "answer"),
    [
        ("install_artifact", 0, True),
        ("install_artifact", 3, False),
        ("switch_slot", 0, True),
        ("switch_slot", 3, False),
        ("rollback", 0, True),
        ("rollback", 3, False),
        ("report_health", 0, True),
        ("report_health", 3, None),
        ("run_preflight", 0, None),
        ("run_preflight", 3, None),
    ],
    ids=lambda v: str(v),
)
def test_exit_zero_is_handled_and_three_is_not_handled(
    tmp_path: Path, ctx: HookContext, hook: str, code: int, answer: bool | None
) -> None:
    path = script(tmp_path, hook, f"cat > /dev/null\nexit {code}\n")
    hooks = exec_hooks(**{hook: {"exec": [path]}})
    assert getattr(hooks, hook)(ctx) == answer


def test_other_exit_code_fails_naming_hook_code_and_stderr(tmp_path: Path, ctx: HookContext) -> None:
    path = script(tmp_path, "switch", "echo 'slot b: bad superblock' >&2\nexit 2\n")
    with pytest.raises(HookFailed) as caught:
        exec_hooks(switch_slot={"exec": [path, "--verbose"]}).switch_slot(ctx)
    failure = caught.value
    assert isinstance(failure, ApplyError)
    assert (failure.hook, failure.exit_code) == ("switch_slot", 2)
    assert "slot b: bad superblock" in failure.stderr_tail
    assert "hook switch_slot failed with exit code 2" in str(failure)
    assert "bad superblock" in str(failure)


def test_hook_that_hangs_is_killed_at_its_timeout(tmp_path: Path, ctx: HookContext) -> None:
    path = script(tmp_path, "preflight", "echo waiting for mission end >&2\nexec /bin/sleep 60\n")
    with pytest.raises(HookFailed, match="timed out after 1 s") as caught:
        exec_hooks(run_preflight={"exec": [path], "timeout_seconds": 1}).run_preflight(ctx)
    assert caught.value.hook == "run_preflight"
    assert "waiting for mission end" in caught.value.stderr_tail


def test_hook_binary_that_cannot_run_fails(tmp_path: Path, ctx: HookContext) -> None:
    with pytest.raises(HookFailed, match="cannot run"):
        exec_hooks(rollback={"exec": [str(tmp_path / "missing")]}).rollback(ctx)


def test_relative_hook_executable_is_a_setup_error() -> None:
    with pytest.raises(SetupError, match=r"hooks\.rollback\.exec\[0\]: 'rollback\.sh'"):
        exec_hooks(rollback={"exec": ["rollback.sh"]})


def test_no_hooks_handle_nothing(ctx: HookContext) -> None:
    hooks = load_hooks(HookSettings())
    assert hooks.install_artifact(ctx) is False
    assert hooks.switch_slot(ctx) is False
    assert hooks.rollback(ctx) is False
    assert hooks.report_health(ctx) is None
    hooks.run_preflight(ctx)


# --- plugins --------------------------------------------------------------------------------------


def test_ab_updater_plugin_takes_over_install_and_switch(ctx: HookContext) -> None:
    hooks = load_hooks(HookSettings(plugin="ab"))
    slots = ctx.app_dir / "slots"
    assert hooks.install_artifact(ctx) is True
    assert (slots / "b").read_bytes() == b"ext4 image v2"
    assert not (slots / "boot").exists()  # installed beside the running slot, not switched yet
    assert hooks.switch_slot(ctx) is True
    assert (slots / "boot").read_text() == "b"
    # What the plugin does not implement is left to the executor.
    assert hooks.rollback(ctx) is False
    assert hooks.report_health(ctx) is None
    hooks.run_preflight(ctx)


def test_executable_wins_over_the_plugin_method(tmp_path: Path, ctx: HookContext) -> None:
    path = script(tmp_path, "switch", "cat > /dev/null\nexit 3\n")
    hooks = load_hooks(HookSettings.model_validate({"plugin": "ab", "switch_slot": {"exec": [path]}}))
    assert hooks.switch_slot(ctx) is False
    assert not (ctx.app_dir / "slots" / "boot").exists()


def test_plugin_answers_and_exceptions(ctx: HookContext) -> None:
    hooks = load_hooks(HookSettings(plugin="opinionated"))
    assert hooks.report_health(ctx) is False
    with pytest.raises(HookFailed) as caught:
        hooks.run_preflight(ctx)
    assert caught.value.hook == "run_preflight"
    assert "plugin 'opinionated' raised RuntimeError: battery at 12 %, need 30 %" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("rauc", r"hook plugin 'rauc' \(hooks\.plugin in agent\.yaml\) is not installed"),
        ("nothing", r"'nothing'.* has none of the hook methods"),
        ("unloadable", r"'unloadable'.* failed to load: OSError: /dev/mmcblk0 not found"),
    ],
    ids=["unknown", "no-methods", "raises-on-load"],
)
def test_unusable_plugin_is_a_setup_error_naming_it(name: str, message: str) -> None:
    with pytest.raises(SetupError, match=message):
        load_hooks(HookSettings(plugin=name))


def test_two_installed_plugins_claiming_one_name_are_refused_naming_both(tmp_path: Path) -> None:
    """A second package also registering ``ab``: which one would flash the robot is a guess, so
    neither is loaded (and neither module is even imported)."""
    site = tmp_path / "site2"
    info = site / "fleetcd_other_updater-2.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fleetcd-other-updater\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text("[fleetcd.agent.hooks]\nab = other_updater:Flasher\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        with pytest.raises(SetupError, match="ambiguous") as refused:
            load_hooks(HookSettings(plugin="ab"))
    finally:
        sys.path.remove(str(site))
        importlib.invalidate_caches()
    assert "other_updater:Flasher" in str(refused.value) and f"{PLUGIN_MODULE}:ABUpdater" in str(
        refused.value
    )
    assert "other_updater" not in sys.modules
