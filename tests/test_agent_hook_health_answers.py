"""A ``report_health`` plugin answer in the wrong type counts as unhealthy and says why (fail closed).

The hook's contract is ``True`` (healthy), ``False`` (unhealthy) or ``None`` (no opinion). A plugin
that answers ``"unhealthy"`` meant a veto; read by truthiness it passed the version it was vetoing.
Every other type is malformed the same way: ``"healthy"``, ``1``, ``0``, an empty or full list or
dict, an object whose ``__bool__`` says True. Each must fail the watch with a
:class:`~agent.errors.HealthFailed` whose message names what came back, and a real agent must roll
the version back and put that message in the robot's status report and the controller's record.
Runs on Python 3.10 too (dev/test-python 3.10).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import HealthFailed
from agent.hooks import ANSWER_SHOWN_CHARS, HookContext, Hooks, load_hooks
from fleetcd.models.agent import HookSettings
from fleetcd.vocabulary import Activity
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld
from tests.test_agent_hooks import Truthy, installed_plugins

PLUGIN_MODULE = "fleetcd_test_healthanswers"
PLUGIN_SOURCE = """
class SaysUnhealthy:
    def report_health(self, ctx):
        return "unhealthy"


class SaysTrue:
    def report_health(self, ctx):
        return True
"""
ENTRY_POINTS = f"""
[fleetcd.agent.hooks]
says-unhealthy = {PLUGIN_MODULE}:SaysUnhealthy
says-true = {PLUGIN_MODULE}:SaysTrue
"""


@pytest.fixture(scope="module", autouse=True)
def plugin_distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    site = tmp_path_factory.mktemp("site")
    yield from installed_plugins(
        site, PLUGIN_MODULE, PLUGIN_SOURCE, "fleetcd-test-healthanswers", ENTRY_POINTS
    )


class Answers:
    """A plugin whose report_health returns ``answer``."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def report_health(self, ctx: HookContext) -> object:
        return self.answer


@pytest.fixture
def ctx(tmp_path: Path) -> HookContext:
    return HookContext("r2d2", "nav", "2.0.0", "1.9.0", "dep-1", "watching", {}, tmp_path / "nav")


def answered(answer: object, ctx: HookContext) -> bool | None:
    return Hooks(plugin=Answers(answer), plugin_name="acme").report_health(ctx)


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        pytest.param("unhealthy", "the str 'unhealthy'", id="the-word-unhealthy"),
        pytest.param("healthy", "the str 'healthy'", id="the-word-healthy"),
        pytest.param("", "the str ''", id="empty-string"),
        pytest.param("False", "the str 'False'", id="the-word-False"),
        pytest.param(1, "a value of type int", id="one"),
        pytest.param(0, "a value of type int", id="zero"),
        pytest.param(0.0, "a value of type float", id="float"),
        pytest.param([], "a value of type list", id="empty-list"),
        pytest.param(["ok"], "a value of type list", id="list"),
        pytest.param({"healthy": True}, "a value of type dict", id="dict"),
        pytest.param(b"ok", "a value of type bytes", id="bytes"),
        pytest.param(Truthy(), "a value of type Truthy", id="truthy-object-with-a-failing-repr"),
    ],
)
def test_a_malformed_report_health_answer_counts_as_unhealthy_and_says_what_came_back(
    answer: object, shown: str, ctx: HookContext
) -> None:
    with pytest.raises(HealthFailed) as caught:
        answered(answer, ctx)
    assert caught.value.reason == "hook"
    assert str(caught.value) == (
        f"unhealthy (hook): the report_health hook of plugin 'acme' answered {shown}, "
        "not True, False or None: a malformed answer counts as unhealthy"
    )


@pytest.mark.parametrize("answer", [True, False, None], ids=str)
def test_the_three_well_formed_answers_are_passed_on_unchanged(answer: bool | None, ctx: HookContext) -> None:
    assert answered(answer, ctx) is answer


def test_a_long_string_answer_is_cut_in_the_message(ctx: HookContext) -> None:
    with pytest.raises(HealthFailed) as caught:
        answered("x" * 10_000, ctx)
    message = str(caught.value)
    assert f"'{'x' * ANSWER_SHOWN_CHARS}...'" in message
    assert len(message) < 300


def test_an_entry_point_plugin_answering_unhealthy_is_named_by_its_entry_point(ctx: HookContext) -> None:
    hooks = load_hooks(HookSettings(plugin="says-unhealthy"))
    with pytest.raises(HealthFailed, match="plugin 'says-unhealthy' answered the str 'unhealthy'"):
        hooks.report_health(ctx)
    assert load_hooks(HookSettings(plugin="says-true")).report_health(ctx) is True


def test_a_plugin_answering_unhealthy_as_a_string_rolls_the_new_version_back_and_reports_why(
    tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer
) -> None:
    world = AgentWorld.create(tmp_path / "w", keys, artifacts, agent={"hooks": {"plugin": "says-unhealthy"}})
    try:
        world.publish("1.0.0")

        result = world.once()

        entry = world.entry()
        assert entry is not None and entry.state is Activity.ROLLED_BACK
        why = "plugin 'says-unhealthy' answered the str 'unhealthy', not True, False or None"
        assert why in (entry.reason or "")
        assert world.executor().active(APP) is None  # a first install rolled back leaves nothing running
        assert result.report is not None
        [deployment] = result.report.deployments
        assert deployment.activity is Activity.ROLLED_BACK
        assert why in deployment.message

        world.reconcile()  # the controller reads the report: the robot's record says why too
        [record] = world.records()
        assert record.activity is Activity.ROLLED_BACK
        assert why in record.events[-1].message
    finally:
        world.close()
