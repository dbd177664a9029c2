"""An empty cohort selector is refused: ``selector: {}`` must never mean "every robot".

A reviewer reading ``selector: {}`` (or a selector whose every criterion is an empty list, an empty
label map or open revision bounds) in a pull request would not expect it to put the whole fleet in
the cohort, and so in every rollout that targets it. The Selector model refuses it with a message
at the selector's ``file:line``; ``fleetcd validate`` reports that and exits 1; the controller
stalls on such a commit and writes no robot's desired state; and ``selector_matches`` takes no
robot even for a selector built without validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.cli.validate import validate_command as command
from controller.reconcile.steps import reconcile_once
from fleetcd.cli.main import guarded
from fleetcd.git.objects import list_refs
from fleetcd.git.refs import NAMESPACES_PREFIX
from fleetcd.models import Cohort
from fleetcd.models.cohort import Selector
from fleetcd.planning.selection import cohort_members, selector_matches
from tests.fleetrepo import FleetRepoBuilder, found
from tests.gpgkeys import KeyFactory
from tests.sim.world import make_world
from tests.test_selection import DEVICES, cohort

COHORT = "cohorts/everyone.yaml"
EMPTY_SELECTORS = [
    pytest.param({}, id="braces"),
    pytest.param({"families": []}, id="empty-list"),
    pytest.param({"families": [], "sites": [], "models": []}, id="every-list-empty"),
    pytest.param({"labels": {}}, id="empty-labels"),
    pytest.param({"hardware_revision": {}}, id="open-revision-bounds"),
    pytest.param({"hardware_revision": {"min": None, "max": None}, "labels": {}}, id="nulls-and-empty-map"),
]


def run_validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = guarded(lambda: command.main(args=list(args), prog_name="fleetcd validate", standalone_mode=False))
    out, err = capsys.readouterr()
    return code, out + err


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    return FleetRepoBuilder(tmp_path / "fleet", keys=keys).standard()


@pytest.mark.parametrize("selector", EMPTY_SELECTORS)
def test_an_empty_selector_is_a_validation_error_at_its_line(
    fleet: FleetRepoBuilder, selector: dict[str, Any]
) -> None:
    fleet.cohort("everyone", stage="staging", devices=[], selector=selector)
    fleet.write()
    result = fleet.validate()
    line = fleet.line_of(COHORT, "selector:")
    assert found(result) == [(COHORT, line, "selector", "schema", "error")]
    assert not result.ok
    [error] = result.errors
    assert error.message.startswith("an empty selector would match every robot in the fleet")


def test_fleetcd_validate_names_the_file_line_and_field_of_an_empty_selector(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.cohort("everyone", stage="staging", devices=["amr-001"], selector={})
    fleet.write()
    code, out = run_validate(capsys, "--repo", str(fleet.root))
    line = fleet.line_of(COHORT, "selector:")
    assert code == 1, out
    assert f"{COHORT}:{line}: error: selector: an empty selector would match every robot in the fleet" in out


def test_an_empty_selector_beside_a_device_list_is_refused_too(fleet: FleetRepoBuilder) -> None:
    """The static list does not make the empty selector harmless: it would still add every robot."""
    fleet.cohort("everyone", stage="staging", devices=["amr-001"], selector={"labels": {}})
    fleet.write()
    assert [d.field for d in fleet.validate().errors] == ["selector"]


@pytest.mark.parametrize(
    "selector",
    [
        pytest.param({"hardware_revision": {"min": 0}}, id="revision-min-only"),
        pytest.param({"hardware_revision": {"max": 9}}, id="revision-max-only"),
        pytest.param({"labels": {"ring": "early"}}, id="one-label"),
        pytest.param({"families": [], "sites": ["berlin"]}, id="one-list-of-several"),
    ],
)
def test_a_selector_naming_one_criterion_still_loads(
    fleet: FleetRepoBuilder, selector: dict[str, Any]
) -> None:
    fleet.cohort("everyone", stage="staging", devices=[], selector=selector)
    fleet.write()
    assert fleet.validate().errors == ()


def test_an_unvalidated_empty_selector_matches_no_robot() -> None:
    """Belt and braces: a Selector built past validation (model_construct) still takes no one."""
    bare = Selector.model_construct(families=[], sites=[], models=[], hardware_revision=None, labels={})
    group = cohort("c", devices=["a"]).model_copy(update={"selector": bare})
    assert all(not selector_matches(group, robot) for robot in DEVICES.values())
    assert cohort_members(group, DEVICES) == ["a"]  # the listed robot only


def test_the_cohort_model_refuses_an_empty_selector_without_the_schema_pass() -> None:
    """Robots load documents with ``schema=False``: the model alone must refuse it."""
    doc = {"apiVersion": "fleetcd.dev/v1", "kind": "Cohort", "name": "c", "stage": "canary", "selector": {}}
    with pytest.raises(ValueError, match="an empty selector would match every robot"):
        Cohort.model_validate(doc)


def test_a_commit_with_an_empty_selector_stalls_the_controller_and_installs_nothing(
    tmp_path: Path, keys: KeyFactory
) -> None:
    def everyone(fleet: FleetRepoBuilder) -> None:
        fleet.cohort("production", stage="production", devices=[], selector={})

    world = make_world(tmp_path, keys, configure=everyone)
    result = reconcile_once(world.settings)
    assert result.stalled is not None
    assert "cohorts/production.yaml" in result.stalled and "empty selector" in result.stalled
    assert result.desired_refs == 0
    assert list_refs(pygit2.Repository(str(world.server)), NAMESPACES_PREFIX) == {}

    # The fix is a pull request naming a criterion: the controller applies it and delivers.
    world.fleet.cohort("production", stage="production", devices=[], selector={"families": ["amr"]})
    world.merge("production: select by family")
    applied = reconcile_once(world.settings)
    assert applied.stalled is None
    assert applied.desired_refs > 0
