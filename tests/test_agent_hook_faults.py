"""Customer hooks that misbehave: real executables that flood, hang, fork, die by signal or cannot
start, and real plugins (entry points of a throwaway distribution) that answer oddly or exit.

Each case is what a customer's updater script or plugin can do on a robot; the agent must turn it
into a bounded :class:`~agent.errors.HookFailed` (the deployment rolls back) or a clear answer,
never hang, never grow without bound and never be stopped by it.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import HealthFailed, HookFailed
from agent.hooks import HOOK_NAMES, HookContext, Hooks, load_hooks
from agent.hooks.exec import STDERR_TAIL_BYTES
from fleetcd.errors import SetupError
from fleetcd.models.agent import HookSettings
from tests.test_agent_hooks import installed_plugins
from tests.test_agent_supervisor import gone

PLUGIN_MODULE = "fleetcd_test_faultyhooks"

PLUGIN_SOURCE = """
import sys

CALLS = []


class Quitter:
    def switch_slot(self, ctx):
        sys.exit(4)


class QuitsOnLoad:
    def __init__(self):
        sys.exit("no updater on this board")

    def rollback(self, ctx):
        return True


class Truthy:
    def install_artifact(self, ctx):
        return "flashed"

    def rollback(self, ctx):
        return 0

    def report_health(self, ctx):
        return []


class Recorder:
    def install_artifact(self, ctx):
        CALLS.append(("install_artifact", ctx.phase))
        return True

    def rollback(self, ctx):
        CALLS.append(("rollback", ctx.phase))
        return True


def run_preflight(ctx):
    CALLS.append(("module-preflight", ctx.version))


shared = Recorder()
"""

ENTRY_POINTS = f"""
[fleetcd.agent.hooks]
quitter = {PLUGIN_MODULE}:Quitter
quits-on-load = {PLUGIN_MODULE}:QuitsOnLoad
truthy = {PLUGIN_MODULE}:Truthy
recorder = {PLUGIN_MODULE}:shared
as-module = {PLUGIN_MODULE}
"""


@pytest.fixture(scope="module", autouse=True)
def plugin_distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    site = tmp_path_factory.mktemp("faulty-site")
    yield from installed_plugins(site, PLUGIN_MODULE, PLUGIN_SOURCE, "fleetcd-test-faultyhooks", ENTRY_POINTS)


@pytest.fixture
def ctx(tmp_path: Path) -> HookContext:
    image = tmp_path / "downloads" / "rootfs.img"
    image.parent.mkdir()
    image.write_bytes(b"ext4")
    return HookContext(
        device="r2d2",
        app="nav",
        version="2.0.0",
        previous="1.9.0",
        deployment_id="dep-7",
        phase="applying",
        artifacts={"rootfs": image},
        app_dir=tmp_path / "apps" / "nav",
    )


def script(tmp_path: Path, name: str, body: str, *, mode: int = 0o755) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(mode)
    return str(path)


def exec_hooks(**hooks: dict[str, Any]) -> Hooks:
    return load_hooks(HookSettings.model_validate(hooks))


# --- executables ----------------------------------------------------------------------------------


def test_a_hook_flooding_stdout_and_stderr_is_drained_and_only_the_stderr_tail_is_kept(
    tmp_path: Path, ctx: HookContext
) -> None:
    path = script(
        tmp_path,
        "install",
        """
        head -c 8000000 /dev/zero
        head -c 8000000 /dev/zero | tr '\\0' 'x' >&2
        echo 'LAST: emmc write error' >&2
        exit 1
        """,
    )
    with pytest.raises(HookFailed) as caught:
        exec_hooks(install_artifact={"exec": [path], "timeout_seconds": 30}).install_artifact(ctx)
    failure = caught.value
    assert failure.exit_code == 1
    assert failure.stderr_tail.endswith("LAST: emmc write error")
    assert len(failure.stderr_tail.encode()) <= STDERR_TAIL_BYTES
    assert len(str(failure)) < STDERR_TAIL_BYTES + 512


def test_a_hook_killed_by_a_signal_fails_with_the_negative_signal_number(
    tmp_path: Path, ctx: HookContext
) -> None:
    path = script(tmp_path, "switch", "cat > /dev/null\nkill -9 $$\n")
    with pytest.raises(HookFailed) as caught:
        exec_hooks(switch_slot={"exec": [path]}).switch_slot(ctx)
    assert caught.value.exit_code == -signal.SIGKILL
    assert "timed out" not in str(caught.value)


def test_a_hanging_hook_takes_its_background_children_down_with_it(tmp_path: Path, ctx: HookContext) -> None:
    pidfile = tmp_path / "child.pid"
    path = script(tmp_path, "rollback", f'/bin/sleep 60 &\necho $! > "{pidfile}"\nexec /bin/sleep 60\n')
    with pytest.raises(HookFailed, match="timed out after 1 s"):
        exec_hooks(rollback={"exec": [path], "timeout_seconds": 1}).rollback(ctx)
    assert gone(int(pidfile.read_text()))


def test_a_hook_that_leaves_a_daemon_holding_its_pipes_answers_without_waiting_for_it(
    tmp_path: Path, ctx: HookContext
) -> None:
    pidfile = tmp_path / "daemon.pid"
    path = script(tmp_path, "switch", f'/bin/sleep 30 &\necho $! > "{pidfile}"\nexit 0\n')
    started = time.monotonic()
    try:
        assert exec_hooks(switch_slot={"exec": [path], "timeout_seconds": 20}).switch_slot(ctx) is True
        assert time.monotonic() - started < 15  # not the daemon's 30 s, not the 20 s timeout
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        ("not-executable", "Permission denied"),
        ("directory", "Permission denied"),
        ("no-shebang", "Exec format error"),
        ("missing-interpreter", "No such file"),
    ],
    ids=lambda v: str(v),
)
def test_a_hook_that_cannot_start_fails_naming_the_binary_and_the_reason(
    tmp_path: Path, ctx: HookContext, setup: str, why: str
) -> None:
    target = tmp_path / "hook"
    if setup == "not-executable":
        target.write_text("#!/bin/sh\nexit 0\n")
        target.chmod(0o644)
    elif setup == "directory":
        target.mkdir()
    elif setup == "no-shebang":
        target.write_bytes(b"\x7fELF-but-not-really\x00\x01")
        target.chmod(0o755)
    else:
        target.write_text("#!/opt/acme/no-such-python\nprint('hi')\n")
        target.chmod(0o755)
    with pytest.raises(HookFailed) as caught:
        exec_hooks(install_artifact={"exec": [str(target)]}).install_artifact(ctx)
    assert caught.value.hook == "install_artifact"
    assert f"cannot run {target}" in str(caught.value)
    assert why in str(caught.value)


def test_hook_arguments_reach_the_executable_verbatim_without_a_shell(
    tmp_path: Path, ctx: HookContext
) -> None:
    seen = tmp_path / "argv"
    path = script(
        tmp_path, "install", f'cat > /dev/null\nfor a in "$@"; do printf "%s\\n" "$a"; done > "{seen}"\n'
    )
    hostile = ["--slot", "b; rm -rf /", "$(touch /tmp/pwned)", "*", "two words"]
    assert exec_hooks(install_artifact={"exec": [path, *hostile]}).install_artifact(ctx) is True
    assert seen.read_text().splitlines() == hostile


def test_a_hook_that_ignores_a_context_larger_than_a_pipe_still_answers(tmp_path: Path) -> None:
    artifacts = {f"part-{n:04d}": tmp_path / ("p" * 120) / f"{n}.img" for n in range(1500)}
    big = HookContext("r2d2", "nav", "2.0.0", None, "dep-8", "applying", artifacts, tmp_path / "nav")
    assert len(big.as_json("install_artifact")) > 4 * 65536
    ignores = script(tmp_path, "ignores", "exit 0\n")
    assert exec_hooks(install_artifact={"exec": [ignores]}).install_artifact(big) is True
    seen = tmp_path / "seen.json"
    reads = script(tmp_path, "reads", f'cat > "{seen}"\nexit 3\n')
    assert exec_hooks(install_artifact={"exec": [reads]}).install_artifact(big) is False
    assert json.loads(seen.read_bytes())["artifacts"] == {k: str(v) for k, v in artifacts.items()}


def test_every_hook_is_told_its_own_name_and_a_none_previous_is_null(tmp_path: Path) -> None:
    first = HookContext("r2d2", "nav", "1.0.0", None, "dep-9", "applying", {}, tmp_path / "nav")
    specs: dict[str, Any] = {}
    for hook in HOOK_NAMES:
        specs[hook] = {"exec": [script(tmp_path, hook, f'cat > "{tmp_path / hook}.json"\nexit 0\n')]}
    hooks = exec_hooks(**specs)
    hooks.install_artifact(first)
    hooks.run_preflight(first)
    hooks.switch_slot(first)
    hooks.report_health(first)
    hooks.rollback(first)
    for hook in HOOK_NAMES:
        document = json.loads((tmp_path / f"{hook}.json").read_bytes())
        assert document["hook"] == hook
        assert document["previous"] is None
        assert document["targets"] == {} and document["artifacts"] == {}


def test_an_executable_for_one_hook_leaves_the_others_to_the_plugin(tmp_path: Path, ctx: HookContext) -> None:
    plugin = importlib.import_module(PLUGIN_MODULE)
    plugin.CALLS.clear()
    path = script(tmp_path, "rollback", "cat > /dev/null\nexit 3\n")
    hooks = load_hooks(HookSettings.model_validate({"plugin": "recorder", "rollback": {"exec": [path]}}))
    assert hooks.install_artifact(ctx) is True
    assert hooks.rollback(ctx) is False  # the executable answered; the plugin's rollback never ran
    assert plugin.CALLS == [("install_artifact", "applying")]


# --- plugins --------------------------------------------------------------------------------------


def test_a_plugin_calling_sys_exit_in_a_hook_fails_the_hook_instead_of_stopping_the_agent(
    ctx: HookContext,
) -> None:
    hooks = load_hooks(HookSettings(plugin="quitter"))
    with pytest.raises(HookFailed) as caught:
        hooks.switch_slot(ctx)
    assert caught.value.hook == "switch_slot"
    assert "raised SystemExit: 4" in str(caught.value)


def test_a_plugin_calling_sys_exit_while_loading_is_a_setup_error_naming_it() -> None:
    with pytest.raises(
        SetupError, match=r"'quits-on-load'.* failed to load: SystemExit: no updater on this board"
    ):
        load_hooks(HookSettings(plugin="quits-on-load"))


def test_plugin_answers_are_not_read_by_truthiness(ctx: HookContext) -> None:
    hooks = load_hooks(HookSettings(plugin="truthy"))
    # "flashed" and 0 are malformed step answers: the step fails, it is neither handled nor left
    # to the executor; [] from report_health counts as unhealthy (fail closed both ways).
    # tests/test_agent_hook_step_answers.py and test_agent_hook_health_answers.py go through them.
    with pytest.raises(
        HookFailed, match="hook install_artifact failed: plugin 'truthy' answered the str 'flashed'"
    ):
        hooks.install_artifact(ctx)
    with pytest.raises(
        HookFailed, match="hook rollback failed: plugin 'truthy' answered a value of type int"
    ):
        hooks.rollback(ctx)
    with pytest.raises(HealthFailed, match="answered a value of type list"):
        hooks.report_health(ctx)


def test_a_plugin_entry_point_may_be_an_instance_or_a_module(ctx: HookContext) -> None:
    plugin = importlib.import_module(PLUGIN_MODULE)
    plugin.CALLS.clear()
    load_hooks(HookSettings(plugin="recorder")).rollback(ctx)
    load_hooks(HookSettings(plugin="as-module")).run_preflight(ctx)
    assert plugin.CALLS == [("rollback", "applying"), ("module-preflight", "2.0.0")]
