"""Robot-state gates with real commands and real files: open, closed, undefined, deferred too long."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.errors import GateClosed, GateTimedOut
from agent.gates import check_gates, deferral_expired, enforce_gates
from fleetcd.compat import UTC
from fleetcd.errors import ApplyError
from fleetcd.models.agent import GateSettings

ALLOW = ["/bin/true", "/bin/false", "/bin/sh", "/bin/sleep"]
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def gates(**checks: dict[str, Any]) -> GateSettings:
    return GateSettings.model_validate({"checks": checks, "max_deferral_seconds": 3600})


def closed(names: list[str], settings: GateSettings, allowlist: list[str] = ALLOW) -> GateClosed:
    with pytest.raises(GateClosed) as caught:
        check_gates(names, settings, allowlist=allowlist)
    return caught.value


def test_open_exec_and_file_gates_let_the_install_go(tmp_path: Path) -> None:
    docked = tmp_path / "docked"
    docked.touch()
    settings = gates(idle={"exec": ["/bin/true"]}, docked={"file": str(docked)})
    check_gates(["docked", "idle"], settings, allowlist=ALLOW)
    check_gates([], settings, allowlist=ALLOW)


def test_closed_exec_gate_says_why(tmp_path: Path) -> None:
    settings = gates(idle={"exec": ["/bin/sh", "-c", "echo mission 42 active; exit 1"]})
    gate = closed(["idle"], settings)
    assert gate.gate == "idle"
    assert "/bin/sh exited 1: mission 42 active" in gate.reason
    assert not isinstance(gate, ApplyError)  # a deferral, not a failure


def test_missing_gate_file_keeps_the_gate_closed(tmp_path: Path) -> None:
    docked = tmp_path / "docked"
    gate = closed(["docked"], gates(docked={"file": str(docked)}))
    assert (gate.gate, gate.reason) == ("docked", f"{docked} does not exist")


def test_gate_the_robot_does_not_define_is_closed() -> None:
    gate = closed(["docked"], gates(idle={"exec": ["/bin/true"]}))
    assert gate.gate == "docked"
    assert gate.reason == "gate 'docked' is not defined in agent.yaml (gates.checks)"


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["/usr/bin/id"], "refused: /usr/bin/id is not in exec_allowlist of agent.yaml"),
        (["true"], "refused: 'true' is not an absolute path"),
        (["/bin/sleep", "30"], "/bin/sleep timed out after 1 s"),
        (["/opt/robot/bin/is-docked"], "cannot run /opt/robot/bin/is-docked"),
    ],
    ids=["not-allowlisted", "relative", "timeout", "missing-binary"],
)
def test_gate_command_that_cannot_answer_fails_closed(argv: list[str], reason: str) -> None:
    settings = gates(docked={"exec": argv, "timeout_seconds": 1})
    gate = closed(["docked"], settings, allowlist=[*ALLOW, "/opt/robot/bin/is-docked"])
    assert gate.reason.startswith(reason)


def test_first_closed_gate_in_order_is_reported(tmp_path: Path) -> None:
    settings = gates(
        idle={"exec": ["/bin/true"]}, docked={"exec": ["/bin/false"]}, charged={"file": str(tmp_path / "x")}
    )
    assert closed(["idle", "docked", "charged"], settings).gate == "docked"
    assert closed(["charged", "docked"], settings).gate == "charged"


@pytest.mark.parametrize(
    ("waited", "expired"),
    [
        (timedelta(0), False),
        (timedelta(seconds=3599), False),
        (timedelta(seconds=3600), True),
        (timedelta(days=2), True),
        (timedelta(days=-20000), False),
    ],
    ids=["just-deferred", "one-second-left", "exactly-max", "long-past", "clock-reset-to-1970"],
)
def test_deferral_expires_after_max_deferral_seconds(waited: timedelta, expired: bool) -> None:
    assert deferral_expired(T0, T0 + waited, gates()) is expired


def test_gate_closed_past_the_deferral_fails_the_deployment() -> None:
    settings = gates(docked={"exec": ["/bin/false"]})
    with pytest.raises(GateClosed):
        enforce_gates(["docked"], settings, allowlist=ALLOW, first_deferred_at=None, now=T0)
    later = T0 + timedelta(minutes=30)
    with pytest.raises(GateClosed):
        enforce_gates(["docked"], settings, allowlist=ALLOW, first_deferred_at=T0, now=later)
    too_late = T0 + timedelta(hours=1)
    with pytest.raises(GateTimedOut) as caught:
        enforce_gates(["docked"], settings, allowlist=ALLOW, first_deferred_at=T0, now=too_late)
    assert isinstance(caught.value, ApplyError)
    assert caught.value.gate == "docked"
    assert "max_deferral_seconds (3600 s)" in str(caught.value)
    assert "/bin/false exited 1" in str(caught.value)


def test_gates_that_opened_meanwhile_pass_even_after_a_long_deferral() -> None:
    settings = gates(docked={"exec": ["/bin/true"]})
    enforce_gates(["docked"], settings, allowlist=ALLOW, first_deferred_at=T0, now=T0 + timedelta(days=3))
