"""No model field that nothing acts on (issue 11.8): the fields that had no reader either act now or
left the format with a clear error naming the field.

* ``defaults.watch_seconds`` (fleet.yaml) and ``docker.registry_insecure`` (agent.yaml) are refused;
* ``defaults.poll_seconds`` is the poll interval ``fleetcd robot add`` writes into a robot's agent.yaml;
  ``defaults.heartbeat_seconds`` its heartbeat, refused when idle robots would show offline;
* a release's ``notes`` show in ``fleetcd get releases``; the fleet's ``description`` under the
  title of ``STATUS.md``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.cli import load_config
from controller.ops.listing import RELEASE_COLUMNS
from controller.pages import render_status_md
from controller.pages.summary import FleetView
from fleetcd.compat import UTC
from fleetcd.errors import InvalidContent
from fleetcd.loading.documents import load_document
from fleetcd.models.agent import AgentConfig
from fleetcd.models.fleet import Fleet
from tests.fleetrepo import FleetRepoBuilder
from tests.test_robot_lifecycle import add, admin, fleet

__all__ = ["admin", "fleet"]  # fixtures

ROOT = Path(__file__).resolve().parent.parent


def fleet_doc(**defaults: Any) -> dict[str, Any]:
    builder = FleetRepoBuilder(Path("/nonexistent"), name="acme")
    return {**builder.fleet, "defaults": defaults}


def test_a_fleet_yaml_with_the_removed_defaults_watch_seconds_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError) as refused:
        Fleet.model_validate(fleet_doc(watch_seconds=30))
    (error,) = refused.value.errors()
    assert error["loc"] == ("defaults",)
    assert "defaults.watch_seconds was removed" in error["msg"] and "health.watch_seconds" in error["msg"]
    Fleet.model_validate(fleet_doc(poll_seconds=120))


def test_an_agent_yaml_with_the_removed_registry_insecure_is_refused_naming_it() -> None:
    document = {
        "apiVersion": "fleetcd.dev/v1",
        "kind": "AgentConfig",
        "device": "robot-1",
        "remote": {"url": "file:///srv/fleet.git"},
        "trust": {"keys_dir": "/etc/fleetcd/keys", "controller": ["A" * 40], "release_signers": ["B" * 40]},
        "docker": {"registry_insecure": True},
    }
    with pytest.raises(ValidationError) as refused:
        AgentConfig.model_validate(document)
    (error,) = [e for e in refused.value.errors() if e["loc"] == ("docker",)]
    assert "docker.registry_insecure was removed" in error["msg"]


def test_the_template_fleet_loads_without_removed_fields() -> None:
    path = ROOT / "fleet-repo-template" / "fleet.yaml"
    try:
        load_document("fleet.yaml", path.read_bytes(), Fleet)
    except InvalidContent as exc:  # pragma: no cover - the assertion below says why
        pytest.fail(str(exc))


def test_robot_add_writes_the_fleets_poll_interval_into_agent_yaml(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.fleet["defaults"] = {"poll_seconds": 240}
    fleet.write()
    fleet.commit("poll every four minutes")

    code, _out, err = add(capsys, fleet, admin, "amr-009")

    assert code == 0, err
    config = load_config(fleet.root.parent / "robots" / "amr-009" / "agent.yaml")
    assert config.poll.interval_seconds == 240


def test_robot_add_writes_the_fleets_heartbeat_into_agent_yaml(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A large fleet reports less often when idle (docs/scaling.md, "Capacity"); the robot's agent
    # acts on poll.heartbeat_seconds (agent.report.cadence.push_due).
    fleet.fleet["defaults"] = {"heartbeat_seconds": 1800, "offline_after_seconds": 3900}
    fleet.write()
    fleet.commit("100,000 robots: a heartbeat every half hour")

    code, _out, err = add(capsys, fleet, admin, "amr-009")

    assert code == 0, err
    config = load_config(fleet.root.parent / "robots" / "amr-009" / "agent.yaml")
    assert config.poll.heartbeat_seconds == 1800
    assert config.poll.interval_seconds == 60  # the fleet's poll default, unchanged


@pytest.mark.parametrize(
    ("defaults", "refused"),
    [
        ({"heartbeat_seconds": 1800}, True),  # offline_after's default, 900 s, is below it
        ({"heartbeat_seconds": 840, "poll_seconds": 60}, True),  # 840 + 60 = 900: not above
        ({"heartbeat_seconds": 839, "poll_seconds": 60}, False),
        ({"heartbeat_seconds": 1800, "offline_after_seconds": 3900}, False),
        ({"offline_after_seconds": 120}, False),  # no heartbeat set here: as before the field
    ],
    ids=["above-default-offline", "equal", "just-below", "offline-raised", "heartbeat-unset"],
)
def test_a_heartbeat_that_would_show_idle_robots_offline_is_refused_naming_both_fields(
    defaults: dict[str, int], refused: bool
) -> None:
    if not refused:
        Fleet.model_validate(fleet_doc(**defaults))
        return
    with pytest.raises(ValidationError) as caught:
        Fleet.model_validate(fleet_doc(**defaults))
    (error,) = caught.value.errors()
    assert error["loc"] == ("defaults",)
    assert "offline_after_seconds" in error["msg"] and "heartbeat_seconds" in error["msg"]


def test_get_releases_shows_the_first_line_of_the_notes_clipped() -> None:
    (notes,) = [c for c in RELEASE_COLUMNS if c.header == "NOTES"]
    assert notes.cell({"notes": "Faster path planning.\nDetails follow."}) == "Faster path planning."
    assert notes.cell({"notes": ""}) == "-"
    clipped = str(notes.cell({"notes": "x" * 200}))
    assert len(clipped) == 60 and clipped.endswith("…")


def test_status_md_shows_the_fleet_description_as_inert_text() -> None:
    view = FleetView(
        fleet="acme",
        generated_at=datetime(2026, 5, 4, tzinfo=UTC),
        commit=None,
        rollouts=(),
        description="AMRs in *Berlin*\nand Tokyo",
    )

    lines = render_status_md(view).splitlines()

    assert lines[0] == "# Fleet status: acme"
    assert lines[2] == "AMRs in \\*Berlin\\* and Tokyo"
