"""What a pull request (or a hand-edited agent.yaml) can write into each document kind, and the verdict.

Every base document is the shipped template's own (fleet-repo-template/), read by the strict loader;
each case changes one thing a careless or hostile author could change, and checks that the model
refuses it at that field — a trust root nobody could ever sign again, a rollout that targets
nothing, a release that requires itself, a robot whose backoff would never back off — or, where a
case is a legitimate edge, that it is accepted. The cross-file checks are tests/test_validate_*.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from fleetcd.loading.documents import load_document
from fleetcd.models import Cohort, ConfigInstance, Fleet, Release, Rollout, TrustRoot
from fleetcd.models.agent import AgentConfig
from fleetcd.models.requirement import Dependent, Requirement, broken_dependent, first_unmet

TEMPLATE = Path(__file__).resolve().parent.parent / "fleet-repo-template"
FPR = ["A" * 40, "B" * 40, "C" * 40]


def template(rel: str, model: type[BaseModel]) -> dict[str, Any]:
    loaded = load_document(rel, (TEMPLATE / rel).read_bytes(), model)
    data: dict[str, Any] = copy.deepcopy(loaded.data)
    return data


def agent_config() -> dict[str, Any]:
    return {
        "apiVersion": "fleetcd.dev/v1",
        "kind": "AgentConfig",
        "device": "amr-ber-01",
        "remote": {"url": "ssh://git@git.fleet.example/fleet", "ssh_key": "/etc/fleetcd/id_ed25519"},
        "trust": {"keys_dir": "/etc/fleetcd/keys", "root": {"threshold": 1, "keys": [FPR[0]]}},
    }


BASES: dict[type[BaseModel], Callable[[], dict[str, Any]]] = {
    Fleet: lambda: template("fleet.yaml", Fleet),
    TrustRoot: lambda: template("trust/root/1.yaml", TrustRoot),
    Release: lambda: template("releases/navstack/1.0.0.yaml", Release),
    Rollout: lambda: template("rollouts/navstack.yaml", Rollout),
    Cohort: lambda: template("cohorts/canary.yaml", Cohort),
    ConfigInstance: lambda: template("configs/navstack/default.yaml", ConfigInstance),
    AgentConfig: agent_config,
}


def edited(model: type[BaseModel], edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = BASES[model]()
    edit(data)
    return data


def verdict(model: type[BaseModel], data: dict[str, Any]) -> str | None:
    """None when accepted; else the dotted location of the first error ('' for the document)."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return ".".join(str(p) for p in exc.errors()[0]["loc"])
    return None


@pytest.mark.parametrize("model", BASES, ids=[m.__name__ for m in BASES])
def test_every_base_document_is_accepted_as_shipped(model: type[BaseModel]) -> None:
    assert verdict(model, BASES[model]()) is None


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return edit


def _root_keys(*fingerprints: str, threshold: int) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["root"] = {
            "threshold": threshold,
            "keys": [{"name": f"root-{i}", "fingerprint": f} for i, f in enumerate(fingerprints)],
        }

    return edit


def _repeat_artifact(data: dict[str, Any]) -> None:
    data["artifacts"].append(copy.deepcopy(data["artifacts"][0]))


def _requires(*apps: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["requires"] = [{"app": app, "version": ">=1.0.0"} for app in apps]

    return edit


def _waves_named(*names: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["strategy"]["waves"] = [{"name": n, "cohort": "staging", "soak_seconds": 60} for n in names]

    return edit


# (model, edit, the field the refusal names); "" is the document itself.
REFUSED: dict[str, tuple[type[BaseModel], Callable[[dict[str, Any]], None], str]] = {
    # trust root: a version nobody could sign again is a fleet locked out for good
    "trust-threshold-above-keys": (TrustRoot, _root_keys(FPR[0], FPR[1], threshold=3), "root"),
    "trust-one-key-listed-twice-counts-once": (TrustRoot, _root_keys(FPR[0], FPR[0], threshold=2), "root"),
    "trust-threshold-zero": (TrustRoot, _root_keys(FPR[0], threshold=0), "root.threshold"),
    "trust-expiry-without-zone": (TrustRoot, _set("expires", "2028-01-01T00:00:00"), ""),
    "trust-version-zero": (TrustRoot, _set("version", 0), "version"),
    "trust-fingerprint-lower-case": (
        TrustRoot,
        _set("controller.0.fingerprint", "a" * 40),
        "controller.0.fingerprint",
    ),
    "trust-unknown-role": (TrustRoot, _set("deployers", []), "deployers"),
    # fleet.yaml
    "fleet-trust-keys-moved-to-the-trust-root": (Fleet, _set("trust.release_signers", {}), "trust"),
    "fleet-removed-watch-seconds": (Fleet, _set("defaults.watch_seconds", 30), "defaults"),
    "fleet-offline-before-a-heartbeat": (Fleet, _set("defaults.heartbeat_seconds", 900), "defaults"),
    # release
    "release-artifact-named-twice": (Release, _repeat_artifact, ""),
    "release-requires-its-own-app": (Release, _requires("navstack"), ""),
    "release-requires-one-app-twice": (Release, _requires("maps", "maps"), ""),
    "release-version-not-semver": (Release, _set("version", "1.0"), "version"),
    "release-unknown-field": (Release, _set("signed_by", "me"), "signed_by"),
    "release-hardware-min-above-max": (
        Release,
        _set("compatibility.hardware_revision", {"min": 3, "max": 2}),
        "compatibility.hardware_revision",
    ),
    # rollout
    "rollout-targets-nothing": (Rollout, _set("targets", {"cohorts": []}), "targets"),
    "rollout-wave-selects-nobody": (
        Rollout,
        _set("strategy.waves.0", {"name": "w", "soak_seconds": 60}),
        "strategy.waves.waves.0",
    ),
    "rollout-wave-names-repeat": (Rollout, _waves_named("a", "a"), "strategy.waves"),
    "rollout-no-waves": (Rollout, _set("strategy.waves", []), "strategy.waves.waves"),
    "rollout-threshold-without-bound": (
        Rollout,
        _set("strategy.waves.0.failure_threshold", {}),
        "strategy.waves.waves.0.failure_threshold",
    ),
    "rollout-removed-auto-rollback": (Rollout, _set("auto_rollback", False), ""),
    "rollout-not-before-without-zone": (
        Rollout,
        _set("schedule.not_before", "2026-05-01T06:00:00"),
        "schedule",
    ),
    "rollout-negative-promote": (Rollout, _set("promote", -1), "promote"),
    # cohort and config
    "cohort-without-members": (Cohort, _drop("devices"), ""),
    "config-default-with-a-target": (ConfigInstance, _set("target", "amr-ber-01"), ""),
    "config-device-scope-without-target": (ConfigInstance, _set("scope", "device"), ""),
    # agent.yaml (written by provisioning, edited by hand on a robot)
    "agent-pinned-threshold-above-keys": (
        AgentConfig,
        _set("trust.root", {"threshold": 2, "keys": [FPR[0], FPR[0]]}),
        "trust.root",
    ),
    "agent-replica-repeats-the-primary": (
        AgentConfig,
        _set("remote.replicas", [{"url": "ssh://git@git.fleet.example/fleet"}]),
        "remote",
    ),
    "agent-backoff-max-below-initial": (
        AgentConfig,
        _set("poll", {"backoff_initial_seconds": 60, "backoff_max_seconds": 10}),
        "poll",
    ),
    "agent-removed-registry-insecure": (AgentConfig, _set("docker", {"registry_insecure": True}), "docker"),
    "agent-both-drift-names-disagree": (
        AgentConfig,
        lambda d: d.update(config_drift="report", drift="restore"),
        "",
    ),
    "agent-relative-ssh-key": (AgentConfig, _set("remote.ssh_key", "id_ed25519"), "remote.ssh_key"),
    "agent-malformed-host-key-pin": (
        AgentConfig,
        _set("remote.host_key_sha256", "SHA256:short"),
        "remote.host_key_sha256",
    ),
    "agent-device-with-slash": (AgentConfig, _set("device", "amr/../x"), "device"),
}


@pytest.mark.parametrize(("model", "edit", "where"), REFUSED.values(), ids=REFUSED.keys())
def test_a_document_an_author_should_not_be_able_to_merge_is_refused_at_its_field(
    model: type[BaseModel], edit: Callable[[dict[str, Any]], None], where: str
) -> None:
    found = verdict(model, edited(model, edit))
    assert found is not None, "accepted"
    assert found == where or found.startswith(f"{where}."), found


ACCEPTED: dict[str, tuple[type[BaseModel], Callable[[dict[str, Any]], None]]] = {
    "trust-threshold-equal-to-keys": (TrustRoot, _root_keys(FPR[0], FPR[1], threshold=2)),
    "agent-old-drift-name-alone": (AgentConfig, lambda d: d.update(config_drift="report")),
    "agent-both-drift-names-agree": (AgentConfig, lambda d: d.update(config_drift="report", drift="report")),
    "agent-backoff-max-equal-to-initial": (
        AgentConfig,
        _set("poll", {"backoff_initial_seconds": 60, "backoff_max_seconds": 60}),
    ),
    "rollout-wave-by-percent-only": (
        Rollout,
        _set("strategy.waves.0", {"name": "w", "percent": 10, "soak_seconds": 60}),
    ),
    "fleet-offline-just-above-a-heartbeat": (Fleet, _set("defaults.heartbeat_seconds", 839)),
}


@pytest.mark.parametrize(("model", "edit"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_an_edge_an_author_may_write_is_accepted(
    model: type[BaseModel], edit: Callable[[dict[str, Any]], None]
) -> None:
    assert verdict(model, edited(model, edit)) is None


def test_the_old_drift_name_means_the_same_as_the_new_one() -> None:
    old = AgentConfig.model_validate(edited(AgentConfig, lambda d: d.update(config_drift="report")))
    new = AgentConfig.model_validate(edited(AgentConfig, lambda d: d.update(drift="report")))
    assert old == new


# --- requires: version ranges (a range no version satisfies would hold a deployment forever) ----------


@pytest.mark.parametrize(
    "text",
    [
        ">=2.0.0, <1.0.0", ">1.0.0, <1.0.0", ">1.0.0, <=1.0.0", "==1.0.0, ==2.0.0", ">=1.0.0, <1.0.0",
        ">=1.0.0, >=1.1.0, >=1.2.0, >=1.3.0, <9.0.0", "~1.0.0", "^1.0.0", ">=1.0", "1.0.0", "", ">= latest",
        ">=1.0.0;<2.0.0", ">=1.0.0\n<2.0.0", ">=01.0.0",
    ],
    ids=[
        "crossed", "open-open-equal", "open-closed-equal", "two-exact", "closed-open-equal", "five-clauses",
        "tilde", "caret", "two-part", "no-operator", "empty", "word", "semicolon", "newline", "leading-zero",
    ],
)  # fmt: skip
def test_a_version_range_that_is_malformed_or_satisfied_by_nothing_is_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        Requirement.model_validate({"app": "maps", "version": text})


@pytest.mark.parametrize(
    ("text", "running", "allowed"),
    [
        (">=1.9.0", "1.10.0", True),
        (">=1.0.0, <=1.0.0", "1.0.0", True),
        ("<2.0.0", "2.0.0-rc.1", True),
        (">=2.0.0", "2.0.0-rc.1", False),
        ("==1.4.2", "1.4.2+build.7", True),
        (">=1.0.0", None, False),
        (">=1.0.0", "latest", False),
        (" >= 1.0.0 ,  < 2.0.0 ", "1.5.0", True),
    ],
    ids=["semver-not-text", "point-range", "pre-release-sorts-before", "pre-release-is-not-the-release",
         "build-metadata-ignored", "not-running", "not-a-version", "spaces-around"],
)  # fmt: skip
def test_a_range_allows_exactly_the_versions_semver_puts_inside(
    text: str, running: str | None, allowed: bool
) -> None:
    assert Requirement(app="maps", version=text).allows(running) is allowed


def test_the_first_unmet_requirement_says_what_runs() -> None:
    needs = [Requirement(app="maps", version=">=1.0.0"), Requirement(app="lidar", version=">=2.0.0")]
    running = {"maps": "1.2.0", "lidar": "1.9.9"}.get
    assert first_unmet(needs, running) == "requires lidar >=2.0.0 (lidar runs 1.9.9)"
    assert first_unmet(needs[:1], running) is None
    assert first_unmet(needs, {}.get) == "requires maps >=1.0.0 (maps does not run)"


def test_a_switch_that_would_break_a_running_dependent_is_named() -> None:
    dependent = Dependent("navstack", "1.4.0", Requirement(app="maps", version=">=2.0.0"))
    running = {"navstack": "1.4.0"}.get
    assert broken_dependent("1.9.0", [dependent], running) == "navstack 1.4.0 runs and requires maps >=2.0.0"
    assert broken_dependent("2.1.0", [dependent], running) is None
    assert (
        broken_dependent("1.9.0", [dependent], {"navstack": "1.3.0"}.get) is None
    )  # not the dependent version
