"""How long each converge step may take before the watchdog says the agent is stuck
(agent.converge.budgets).

A budget shorter than what really bounds the step would have systemd kill a healthy agent in the
middle of a long download or a slow health watch, and the robot would restart into a rollback it
did not need; a budget with no bound would let a hung step hold the robot forever. Each table
checks a budget against the bound the step itself enforces: the downloader's derived deadline per
artifact, every probe attempt timing out, the hooks' and gates' timeouts.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.converge.budgets import (
    HOOK_NAMES,
    applying_seconds,
    fetch_seconds,
    gates_seconds,
    hook_seconds,
    probes_seconds,
    rolling_back_seconds,
    switching_seconds,
    verifying_seconds,
    watching_seconds,
)
from agent.fetch import DownloadSettings
from agent.liveness import LivenessSettings
from fleetcd.models.agent import AgentConfig
from fleetcd.models.release import Probe, Release

FPR = "A" * 40
SHA = "b" * 64
MIB = 1024 * 1024
DOWNLOAD = DownloadSettings(min_bytes_per_second=MIB, deadline_floor_seconds=60.0)
LIVENESS = LivenessSettings(default_step_seconds=300.0, slack_seconds=30.0, image_pull_seconds=3600.0)


def tarball(name: str, size: int) -> dict[str, Any]:
    return {
        "kind": "app_tarball",
        "name": name,
        "url": f"https://a.test/{name}.tgz",
        "sha256": SHA,
        "size": size,
    }


def image(name: str) -> dict[str, Any]:
    return {"kind": "container_image", "name": name, "image": f"registry.test/{name}@sha256:{SHA}"}


def probe(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": "http", "url": "http://127.0.0.1:8080/healthz", **fields}


def release(**fields: Any) -> Release:
    doc: dict[str, Any] = {
        "apiVersion": "fleetcd.dev/v1",
        "kind": "Release",
        "app": "nav",
        "version": "1.1.0",
        "artifacts": [tarball("app", 10 * MIB)],
        **fields,
    }
    return Release.model_validate(doc)


def config(**fields: Any) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "apiVersion": "fleetcd.dev/v1",
            "kind": "AgentConfig",
            "device": "amr-1",
            "remote": {"url": "/srv/fleet.git"},
            "trust": {"keys_dir": "/etc/fleetcd/keys", "root": {"keys": [FPR]}},
            **fields,
        }
    )


def probes(*docs: dict[str, Any]) -> list[Probe]:
    return list(release(health={"probes": list(docs)}).health.probes)


# --- downloads ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("artifacts", "seconds"),
    [
        ([tarball("a", 1)], 60.0 + 1 / MIB),
        ([tarball("a", 10 * MIB)], 70.0),
        ([tarball("a", 10 * MIB), tarball("b", 20 * MIB)], 70.0 + 80.0),
        ([image("a")], 3600.0),
        ([image("a"), tarball("b", 100 * MIB)], 3600.0 + 160.0),
    ],
    ids=["tiny", "one", "two-in-sequence", "image", "image-and-tarball"],
)
def test_fetching_every_artifact_gets_each_ones_own_deadline_in_sequence(
    artifacts: list[dict[str, Any]], seconds: float
) -> None:
    assert fetch_seconds(release(artifacts=artifacts), DOWNLOAD, LIVENESS) == pytest.approx(seconds)


def test_an_explicit_download_deadline_is_used_per_artifact() -> None:
    fixed = DownloadSettings(deadline_seconds=45.0)
    two = release(artifacts=[tarball("a", 64 * 1024**3), tarball("b", 1)])
    assert fetch_seconds(two, fixed, LIVENESS) == 90.0


@pytest.mark.parametrize("size", [1, MIB, 500 * MIB, 64 * 1024**3])
def test_the_fetch_budget_is_never_below_the_downloaders_own_deadline(size: int) -> None:
    one = release(artifacts=[tarball("a", size)])
    assert fetch_seconds(one, DOWNLOAD, LIVENESS) >= DOWNLOAD.deadline_for(size)


# --- probes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("docs", "seconds"),
    [
        ([], 0),
        ([probe("p")], 3 * (5 + 5)),
        ([probe("p", attempts=1, timeout_seconds=2, interval_seconds=1)], 3),
        (
            [probe("p", initial_delay_seconds=30, attempts=2, timeout_seconds=10, interval_seconds=5)],
            30 + 2 * 15,
        ),
        ([probe("a"), probe("b", attempts=10, timeout_seconds=300, interval_seconds=300)], 30 + 10 * 600),
    ],
    ids=["none", "defaults", "one-quick", "delayed", "two"],
)
def test_the_probe_budget_is_every_attempt_timing_out_then_waiting(
    docs: list[dict[str, Any]], seconds: int
) -> None:
    assert probes_seconds(probes(*docs)) == seconds


# --- hooks and gates ----------------------------------------------------------------------------------


def test_every_hook_name_is_a_hook_setting() -> None:
    hooks = config().hooks
    for name in HOOK_NAMES:
        assert hasattr(hooks, name), f"{name} is budgeted but no agent.yaml setting has that name"


def test_an_executable_hook_budgets_its_timeout_and_a_missing_one_nothing() -> None:
    cfg = config(hooks={"switch_slot": {"exec": ["/usr/bin/switch"], "timeout_seconds": 120}})
    assert hook_seconds(cfg, "switch_slot") == 120.0
    assert hook_seconds(cfg, "install_artifact") == 0.0
    assert hook_seconds(cfg, "no_such_hook") == 0.0


def test_a_plugin_hook_is_covered_by_the_default_step_budget() -> None:
    cfg = config(hooks={"plugin": "vendor-hooks"})
    assert hook_seconds(cfg, "switch_slot") == 0.0
    assert switching_seconds(cfg, LIVENESS) == LIVENESS.default_step_seconds


def test_gates_add_their_timeouts_and_file_gates_cost_nothing() -> None:
    cfg = config(
        exec_allowlist=["/usr/bin/docked"],
        gates={
            "checks": {
                "docked": {"exec": ["/usr/bin/docked"], "timeout_seconds": 20},
                "idle": {"file": "/run/robot/idle"},
            }
        },
    )
    assert gates_seconds(cfg, ["docked", "idle"]) == 20.0
    assert gates_seconds(cfg, ["docked", "docked"]) == 40.0
    assert gates_seconds(cfg, ["unknown-gate"]) == 0.0
    assert gates_seconds(cfg, []) == 0.0


# --- the steps ----------------------------------------------------------------------------------------


def test_verifying_is_re_reading_every_artifact_plus_the_gates() -> None:
    cfg = config(gates={"checks": {"docked": {"exec": ["/usr/bin/docked"], "timeout_seconds": 15}}})
    rel = release(artifacts=[tarball("a", 40 * MIB)])
    assert verifying_seconds(rel, ["docked"], cfg, DOWNLOAD, LIVENESS) == pytest.approx(100.0 + 15.0)


def test_applying_covers_preflight_steps_hooks_unpacking_and_bookkeeping() -> None:
    cfg = config(
        hooks={
            "run_preflight": {"exec": ["/usr/bin/pre"], "timeout_seconds": 50},
            "install_artifact": {"exec": ["/usr/bin/inst"], "timeout_seconds": 70},
        }
    )
    rel = release(
        artifacts=[tarball("a", 20 * MIB)],
        preflight=[
            {"name": "disk", "exec": ["/usr/bin/check-disk"], "timeout_seconds": 30},
            {"name": "lidar", "exec": ["/usr/bin/check-lidar"]},
        ],
    )
    assert applying_seconds(rel, cfg, DOWNLOAD, LIVENESS) == pytest.approx(30 + 60 + 50 + 70 + 80.0 + 300.0)


def test_watching_is_the_window_then_every_probe_to_the_end_plus_the_report_hook() -> None:
    cfg = config(hooks={"report_health": {"exec": ["/usr/bin/report"], "timeout_seconds": 10}})
    rel = release(
        health={
            "watch_seconds": 120,
            "probes": [probe("p", attempts=2, timeout_seconds=5, interval_seconds=5)],
        }
    )
    assert watching_seconds(rel, cfg) == 120 + 20 + 10


def test_a_watch_window_with_probes_longer_than_the_window_is_still_covered() -> None:
    # The window never cuts a probe short: a slow probe's last attempt ends after the window.
    rel = release(
        health={
            "watch_seconds": 1,
            "probes": [probe("slow", attempts=10, timeout_seconds=300, interval_seconds=300)],
        }
    )
    assert watching_seconds(rel, config()) >= 1 + 10 * 300


@pytest.mark.parametrize("with_release", [True, False], ids=["known-release", "release-unknown"])
def test_rolling_back_covers_the_rollback_checks_when_the_release_is_known(with_release: bool) -> None:
    cfg = config(hooks={"rollback": {"exec": ["/usr/bin/rb"], "timeout_seconds": 40}})
    rel = release(rollback={"checks": [probe("back", attempts=3, timeout_seconds=5, interval_seconds=5)]})
    expected = 40 + (30 if with_release else 0) + 300.0
    assert rolling_back_seconds(rel if with_release else None, cfg, LIVENESS) == expected


def test_every_budget_is_finite_and_positive_for_the_largest_release_allowed() -> None:
    biggest = release(
        artifacts=[tarball(f"a{i}", 64 * 1024**3) for i in range(64)],
        health={
            "watch_seconds": 3600,
            "probes": [
                probe(
                    f"p{i}", attempts=10, timeout_seconds=300, interval_seconds=300, initial_delay_seconds=300
                )
                for i in range(5)
            ],
        },
    )
    cfg = config()
    budgets = [
        fetch_seconds(biggest, DOWNLOAD, LIVENESS),
        verifying_seconds(biggest, [], cfg, DOWNLOAD, LIVENESS),
        applying_seconds(biggest, cfg, DOWNLOAD, LIVENESS),
        switching_seconds(cfg, LIVENESS),
        watching_seconds(biggest, cfg),
        rolling_back_seconds(biggest, cfg, LIVENESS),
    ]
    assert all(0 < b < 10**9 for b in budgets)
