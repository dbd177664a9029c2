"""A plugin's ``install_artifact``, ``switch_slot`` or ``rollback`` answer in the wrong type fails
that step instead of counting as "handled" (fail closed).

Each of the three answers ``True`` (handled), ``False`` or ``None`` (not handled: the executor does
it). Read by truthiness, a plugin answering ``"no"`` counted as handled: the agent believed an
install, a switch or a rollback happened that did not. Any other answer — ``"no"``, ``"done"``,
``1``, ``0``, a list, a dict, an object whose ``__bool__`` says True — is now a
:class:`~agent.errors.HookFailed` naming what came back, exactly as if the hook had raised: an
install or a switch fails and the old version stays or comes back; a rollback fails loudly and the
version that runs keeps running with its own config (the executor's rollback is not layered over a
plugin whose work is unknown). Runs on Python 3.10 too (dev/test-python 3.10).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.errors import HookFailed
from agent.hooks import HookContext, Hooks
from fleetcd.vocabulary import Activity
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP
from tests.test_agent_hooks import Truthy, installed_plugins, second_version_with_plugin

PLUGIN_MODULE = "fleetcd_test_stepanswers"
PLUGIN_SOURCE = """
class InstallSaysNoToTwo:
    def install_artifact(self, ctx):
        return "no" if ctx.version == "2.0.0" else None


class SwitchSaysNoToTwo:
    def switch_slot(self, ctx):
        return "no" if ctx.version == "2.0.0" else None


class RollbackSaysNo:
    def rollback(self, ctx):
        return "no"
"""
ENTRY_POINTS = f"""
[fleetcd.agent.hooks]
install-says-no = {PLUGIN_MODULE}:InstallSaysNoToTwo
switch-says-no = {PLUGIN_MODULE}:SwitchSaysNoToTwo
rollback-says-no = {PLUGIN_MODULE}:RollbackSaysNo
"""
STEP_HOOKS = ("install_artifact", "switch_slot", "rollback")


@pytest.fixture(scope="module", autouse=True)
def plugin_distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    site = tmp_path_factory.mktemp("site")
    yield from installed_plugins(site, PLUGIN_MODULE, PLUGIN_SOURCE, "fleetcd-test-stepanswers", ENTRY_POINTS)


class Answers:
    """A plugin whose step hooks all return ``answer``."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def install_artifact(self, ctx: HookContext) -> object:
        return self.answer

    def switch_slot(self, ctx: HookContext) -> object:
        return self.answer

    def rollback(self, ctx: HookContext) -> object:
        return self.answer


@pytest.fixture
def ctx(tmp_path: Path) -> HookContext:
    return HookContext("r2d2", "nav", "2.0.0", "1.9.0", "dep-1", "applying", {}, tmp_path / "nav")


def step(hooks: Hooks, hook: str) -> Callable[[HookContext], bool]:
    method: Callable[[HookContext], bool] = getattr(hooks, hook)
    return method


@pytest.mark.parametrize("hook", STEP_HOOKS)
@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        pytest.param("no", "the str 'no'", id="the-word-no"),
        pytest.param("done", "the str 'done'", id="the-word-done"),
        pytest.param("", "the str ''", id="empty-string"),
        pytest.param(1, "a value of type int", id="one"),
        pytest.param(0, "a value of type int", id="zero"),
        pytest.param([], "a value of type list", id="empty-list"),
        pytest.param({"handled": True}, "a value of type dict", id="dict"),
        pytest.param(Truthy(), "a value of type Truthy", id="truthy-object-with-a-failing-repr"),
    ],
)
def test_a_malformed_step_answer_fails_the_hook_and_says_what_came_back(
    hook: str, answer: object, shown: str, ctx: HookContext
) -> None:
    with pytest.raises(HookFailed) as caught:
        step(Hooks(plugin=Answers(answer), plugin_name="acme"), hook)(ctx)
    assert caught.value.hook == hook
    assert str(caught.value) == (
        f"hook {hook} failed: plugin 'acme' answered {shown}, not True, False or None: "
        "a malformed answer counts as a failure of the step"
    )


@pytest.mark.parametrize("hook", STEP_HOOKS)
@pytest.mark.parametrize(("answer", "handled"), [(True, True), (False, False), (None, False)], ids=str)
def test_the_three_well_formed_step_answers_say_handled_or_not(
    hook: str, answer: bool | None, handled: bool, ctx: HookContext
) -> None:
    assert step(Hooks(plugin=Answers(answer), plugin_name="acme"), hook)(ctx) is handled


def test_an_install_plugin_that_answers_the_string_no_does_not_count_as_installed(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    run = second_version_with_plugin(tmp_path, keys, artifacts, "install-says-no")
    with run as (world, entry, deployment):
        # Failed before the switch: nothing installed 2.0.0, and the agent did not switch to it.
        assert entry.state is Activity.FAILED
        why = "hook install_artifact failed: plugin 'install-says-no' answered the str 'no'"
        assert why in (entry.reason or "")
        assert world.executor().active(APP) == "1.0.0"
        assert world.answer("1.0.0") == "1.0.0"
        assert deployment.activity is Activity.FAILED
        assert why in deployment.message
        world.reconcile()
        record = world.record(entry.deployment_id)
        assert record.activity is Activity.FAILED
        assert why in record.events[-1].message


def test_a_switch_plugin_that_answers_the_string_no_does_not_count_as_switched_and_rolls_back(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    run = second_version_with_plugin(tmp_path, keys, artifacts, "switch-says-no")
    with run as (world, entry, deployment):
        assert entry.state is Activity.ROLLED_BACK
        why = "hook switch_slot failed: plugin 'switch-says-no' answered the str 'no'"
        assert why in (entry.reason or "")
        assert world.executor().active(APP) == "1.0.0"
        assert world.answer("1.0.0") == "1.0.0"
        assert deployment.activity is Activity.ROLLED_BACK
        assert why in deployment.message


def test_a_rollback_plugin_that_answers_the_string_no_does_not_count_as_rolled_back(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    run = second_version_with_plugin(tmp_path, keys, artifacts, "rollback-says-no", "unhealthy")
    with run as (world, entry, deployment):
        # Not ROLLED_BACK: nothing rolled 2.0.0 back, and the robot must not say it did.
        assert entry.state is Activity.FAILED
        why = "hook rollback failed: plugin 'rollback-says-no' answered the str 'no'"
        assert "rollback failed: " in (entry.reason or "") and why in (entry.reason or "")
        assert world.executor().active(APP) == "2.0.0"  # still runs, with its own config: never a mix
        assert deployment.activity is Activity.FAILED
        assert why in deployment.message
        world.reconcile()
        assert world.record(entry.deployment_id).activity is Activity.FAILED
