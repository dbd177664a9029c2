"""``agent.yaml`` text under values YAML would misread (fleetcd/operator/agentconfig.py), read back by
the agent's own loader.

tests/test_operator_agentconfig.py covers what a robot pins and a note with plain newlines. Here:
strings YAML 1.1 or a careless emitter turns into booleans, nulls, numbers, dates, aliases, tags or
comments must come back as the same strings; a config with every section set survives the trip;
the same config always gives the same bytes; a note cannot open a line of YAML with any of the
line breaks Unicode or YAML know; and text that could not be written as UTF-8 is refused naming
the file, never written half-way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from agent.cli import load_config
from fleetcd.errors import InvalidContent
from fleetcd.models import TrustRoot
from fleetcd.models.agent import (
    AgentConfig,
    DockerSettings,
    Endpoint,
    PollSettings,
    RemoteSettings,
)
from fleetcd.operator.agentconfig import AGENT_CONFIG_FILE, agent_config, pinned_trust, render_agent_config
from tests.fleetrepo import API, PLACEHOLDER_CONTROLLER, PLACEHOLDER_SIGNER, TRUST_EXPIRES

ROOT_KEYS = ["E" * 40, "1" * 40, "9" * 40]  # deliberately not in sorted order
PIN = "SHA256:" + "A" * 43


def trust_root(threshold: int = 2) -> TrustRoot:
    document: dict[str, Any] = {
        "apiVersion": API,
        "kind": "TrustRoot",
        "fleet": "acme",
        "version": 3,
        "expires": TRUST_EXPIRES,
        "root": {
            "threshold": threshold,
            "keys": [{"fingerprint": fp, "name": f"root {i}"} for i, fp in enumerate(ROOT_KEYS)],
        },
        "controller": [{"fingerprint": PLACEHOLDER_CONTROLLER, "name": "controller"}],
        "release_signers": {"threshold": 1, "keys": [{"fingerprint": PLACEHOLDER_SIGNER, "name": "ci"}]},
        "approvers": [],
        "approvals": {"staging": 0, "canary": 0, "production": 0},
    }
    return TrustRoot.model_validate(document)


TRUST = pinned_trust(trust_root(), "/etc/fleetcd/keys")


def written_and_read(config: AgentConfig, tmp_path: Path, note: str = "") -> tuple[str, AgentConfig]:
    path = tmp_path / AGENT_CONFIG_FILE
    text = render_agent_config(config, path=str(path), note=note)
    path.write_text(text, encoding="utf-8")
    return text, load_config(path)


AMBIGUOUS = [
    pytest.param(value, id=name)
    for name, value in [
        ("yaml11-yes", "yes"),
        ("yaml11-off", "Off"),
        ("yaml11-y", "y"),
        ("null", "null"),
        ("tilde", "~"),
        ("octal", "0o17"),
        ("old-octal", "012"),
        ("hex", "0x1F"),
        ("float", "1e3"),
        ("underscored-int", "1_000"),
        ("infinity", ".inf"),
        ("sexagesimal", "1:20:30"),
        ("date", "2001-02-03"),
        ("mapping", "a: b"),
        ("comment", "#c"),
        ("trailing-comment", "a #c"),
        ("sequence", "- x"),
        ("alias", "*alias"),
        ("anchor", "&anchor"),
        ("tag", "!tag"),
        ("directive", "%YAML"),
        ("merge-key", "<<"),
        ("block-scalar", "|"),
        ("flow", "{a: [b]}"),
        ("quotes", "'\"'"),
        ("backslash", "\\n"),
        ("spaces", "  lead and trail  "),
        ("tab", "a\tb"),
        ("unicode", "rob✓t-ü"),
        ("line-separator", "a\u2028b"),
        ("next-line", "a\x85b"),
        ("document-end", "..."),
    ]
]


@pytest.mark.parametrize("value", AMBIGUOUS)
def test_a_string_yaml_could_misread_comes_back_as_the_same_string(tmp_path: Path, value: str) -> None:
    config = agent_config(
        "amr-007",
        remote=RemoteSettings(url="ssh://git@fleet.example/fleet", ssh_user=value),
        trust=TRUST,
        state_dir=f"/var/lib/{value}",
        exec_allowlist=[f"/opt/{value}", "/usr/bin/true"],
        executor="docker",
        docker=DockerSettings(base_url=value),
    )

    _, read = written_and_read(config, tmp_path)

    assert read == config
    assert read.remote.ssh_user == value and read.docker.base_url == value
    assert read.state_dir == f"/var/lib/{value}" and read.exec_allowlist[0] == f"/opt/{value}"


def test_a_robot_with_every_section_set_reads_back_exactly(tmp_path: Path) -> None:
    remote = RemoteSettings(
        url="ssh://git@fleet.example:2222/fleet",
        ssh_key="/etc/fleetcd/id_ed25519",
        ssh_user="robot",
        host_key_sha256=PIN,
        timeout_seconds=17,
        replicas=[Endpoint(url="ssh://git@replica-1.example/fleet", host_key_sha256=PIN)],
        status=Endpoint(url="ssh://git@shard-2.example/fleet"),
    )
    poll = PollSettings(interval_seconds=7, jitter_percent=0, heartbeat_seconds=11, progress_seconds=0)
    config = agent_config(
        "amr-007",
        remote=remote,
        trust=TRUST,
        state_dir="/data/fleetcd",
        executor="docker",
        poll=poll,
        exec_allowlist=["/usr/lib/robot/docked", "/usr/lib/robot/idle"],
        docker=DockerSettings(base_url="tcp://127.0.0.1:2375"),
    )

    text, read = written_and_read(config, tmp_path)

    assert read == config
    assert read.remote.replicas[0].host_key_sha256 == PIN and read.remote.status is not None
    assert read.poll.jitter_percent == 0 and read.poll.progress_seconds == 0  # zeros are not "unset"
    assert "backoff_max_seconds" not in text  # still at its default: not spelled out


def test_the_robot_pins_the_root_keys_sorted_with_the_roots_threshold_and_version(tmp_path: Path) -> None:
    config = agent_config("amr-007", remote=RemoteSettings(url="/srv/fleet.git"), trust=TRUST)

    _, read = written_and_read(config, tmp_path)

    assert read.trust.root.keys == sorted(ROOT_KEYS)
    assert (read.trust.root.threshold, read.trust.root.version, read.trust.fleet) == (2, 3, "acme")
    assert PLACEHOLDER_CONTROLLER not in read.trust.root.keys
    assert PLACEHOLDER_SIGNER not in read.trust.root.keys


def test_the_same_config_always_renders_the_same_bytes(tmp_path: Path) -> None:
    """``robot add`` run twice, or re-run on another machine, must not produce a diff."""

    def make() -> str:
        config = agent_config(
            "amr-007",
            remote=RemoteSettings(url="ssh://git@fleet.example/fleet"),
            trust=pinned_trust(trust_root(), "/etc/fleetcd/keys"),
            exec_allowlist=["/b", "/a"],
        )
        return render_agent_config(config, note="enrolled")

    first = make()
    assert make() == first
    body = [line for line in first.splitlines() if not line.startswith("#")]
    assert body[:2] == ["apiVersion: fleetcd.dev/v1", "kind: AgentConfig"]
    assert first.index("- /b") < first.index("- /a")  # the allowlist keeps the order it was given


@pytest.mark.parametrize(
    "brk",
    ["\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"],
    ids=["cr", "crlf", "vt", "ff", "fs", "gs", "rs", "nel", "line-sep", "para-sep"],
)
def test_no_line_break_in_a_note_can_smuggle_a_setting_into_agent_yaml(tmp_path: Path, brk: str) -> None:
    config = agent_config("amr-007", remote=RemoteSettings(url="/srv/fleet.git"), trust=TRUST)

    text, read = written_and_read(config, tmp_path, note=f"enrolled{brk}executor: docker{brk}drift: restore")

    assert (read.executor, read.drift) == ("tarball", "report")
    assert read == config
    comments = [line for line in text.splitlines() if "executor" in line or "drift" in line]
    assert comments and all(line.startswith("# ") for line in comments)


@pytest.mark.parametrize(
    "note",
    ["escape \x1b[2J", "nul \x00", "delete \x7f", "surrogate \udcff from a non-UTF-8 argument"],
    ids=["escape", "nul", "del", "lone-surrogate"],
)
def test_a_note_that_cannot_be_written_as_text_is_refused_naming_the_file(note: str) -> None:
    config = agent_config("amr-007", remote=RemoteSettings(url="/srv/fleet.git"), trust=TRUST)

    with pytest.raises(InvalidContent, match=re.escape("robots/amr-007/agent.yaml")):
        render_agent_config(config, path="robots/amr-007/agent.yaml", note=note)


@pytest.mark.parametrize(
    ("field", "value"),
    [("ssh_user", "git\x1b[2J"), ("ssh_user", "nul\x00"), ("url", "/srv/fleet\x00.git")],
    ids=["user-escape", "user-nul", "url-nul"],
)
def test_a_control_character_in_a_remote_setting_never_reaches_a_robot(field: str, value: str) -> None:
    """The model or the load-back refuses it here, naming the field: a robot never gets a file it
    would refuse (or worse, read differently)."""
    try:
        remote = RemoteSettings.model_validate({"url": "/srv/fleet.git", field: value})
        config = agent_config("amr-007", remote=remote, trust=TRUST)
    except ValueError as refused:
        assert field in str(refused)
        return
    with pytest.raises(InvalidContent, match=re.escape(f"remote.{field}")):
        render_agent_config(config, path="agent.yaml")
