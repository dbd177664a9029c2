"""A plugin's ``run_preflight`` that answers ``False`` (or anything but ``True`` or ``None``) stops
the install instead of being ignored (fail closed).

The hook says "not ok" by raising; its answer used to be dropped, so a plugin answering ``False``
or ``"battery low"`` — meaning "do not install now" — let the install go ahead. ``None`` (a method
that returns nothing) and ``True`` are "ok"; ``False`` is "not ok"; anything else is malformed and
counts as "not ok" too. Either way a :class:`~agent.errors.HookFailed` names what came back, and a
real agent fails the deployment before anything is installed. Runs on Python 3.10 too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import HookFailed
from agent.executors.base import RunState
from agent.hooks import HookContext, Hooks
from fleetcd.vocabulary import Activity
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP
from tests.test_agent_hooks import installed_plugins, second_version_with_plugin

PLUGIN_MODULE = "fleetcd_test_preflightanswers"
PLUGIN_SOURCE = """
class PreflightSaysFalseToTwo:
    def run_preflight(self, ctx):
        return False if ctx.version == "2.0.0" else None
"""
ENTRY_POINTS = f"""
[fleetcd.agent.hooks]
preflight-says-false = {PLUGIN_MODULE}:PreflightSaysFalseToTwo
"""


@pytest.fixture(scope="module", autouse=True)
def plugin_distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    site = tmp_path_factory.mktemp("site")
    yield from installed_plugins(
        site, PLUGIN_MODULE, PLUGIN_SOURCE, "fleetcd-test-preflightanswers", ENTRY_POINTS
    )


class Answers:
    """A plugin whose run_preflight returns ``answer``."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def run_preflight(self, ctx: HookContext) -> object:
        return self.answer


@pytest.fixture
def ctx(tmp_path: Path) -> HookContext:
    return HookContext("r2d2", "nav", "2.0.0", "1.9.0", "dep-1", "applying", {}, tmp_path / "nav")


def preflight(answer: object, ctx: HookContext) -> None:
    Hooks(plugin=Answers(answer), plugin_name="acme").run_preflight(ctx)


def test_a_preflight_answering_false_is_not_ok(ctx: HookContext) -> None:
    with pytest.raises(HookFailed) as caught:
        preflight(False, ctx)
    assert caught.value.hook == "run_preflight"
    assert str(caught.value) == "hook run_preflight failed: plugin 'acme' answered False: not ok"


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        pytest.param("battery low", "the str 'battery low'", id="a-reason-as-a-string"),
        pytest.param("ok", "the str 'ok'", id="the-word-ok"),
        pytest.param(0, "a value of type int", id="zero"),
        pytest.param(1, "a value of type int", id="one"),
        pytest.param({"battery": 12}, "a value of type dict", id="dict"),
    ],
)
def test_a_malformed_preflight_answer_is_not_ok_and_says_what_came_back(
    answer: object, shown: str, ctx: HookContext
) -> None:
    with pytest.raises(HookFailed) as caught:
        preflight(answer, ctx)
    assert str(caught.value) == (
        f"hook run_preflight failed: plugin 'acme' answered {shown}, not True, False or None: "
        "a malformed answer counts as not ok"
    )


@pytest.mark.parametrize("answer", [True, None], ids=str)
def test_a_preflight_answering_true_or_nothing_is_ok(answer: bool | None, ctx: HookContext) -> None:
    preflight(answer, ctx)


def test_a_preflight_plugin_that_answers_false_stops_the_install(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    run = second_version_with_plugin(tmp_path, keys, artifacts, "preflight-says-false")
    with run as (world, entry, deployment):
        assert entry.state is Activity.FAILED
        why = "hook run_preflight failed: plugin 'preflight-says-false' answered False: not ok"
        assert why in (entry.reason or "")
        assert world.executor().active(APP) == "1.0.0"
        assert world.executor().state(APP, "2.0.0") is RunState.MISSING  # never installed
        assert world.answer("1.0.0") == "1.0.0"
        assert deployment.activity is Activity.FAILED
        assert why in deployment.message
