"""The one ``agent.yaml`` writer (fleetcd/operator/agentconfig.py): what a provisioned robot pins and
that the file it gets is the file the agent reads, for ``fleetcd robot add`` and the demo alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import load_config
from controller.demo.fleet import Robot
from controller.demo.robots import provision
from fleetcd.loading.documents import load_document
from fleetcd.models import TrustRoot
from fleetcd.models.agent import AgentConfig, RemoteSettings
from fleetcd.operator.agentconfig import agent_config, pinned_trust, render_agent_config
from tests.fleetrepo import PLACEHOLDER_ROOT, FleetRepoBuilder

APPROVER = "B" * 40


def _fleet(tmp_path: Path, *, threshold: int = 1) -> tuple[Path, TrustRoot]:
    b = FleetRepoBuilder(tmp_path / "fleet", name="acme")
    b.trust["approvers"] = [{"fingerprint": APPROVER, "name": "carol"}]
    b.trust["release_signers"]["threshold"] = threshold
    if threshold > 1:
        b.trust["release_signers"]["keys"].append({"fingerprint": "D" * 40, "name": "second"})
    root = b.write()
    raw = (root / "trust/root/1.yaml").read_bytes()
    return root, load_document("trust/root/1.yaml", raw, TrustRoot).model


def _config(fleet: TrustRoot, device: str = "amr-007", **settings: object) -> AgentConfig:
    remote = RemoteSettings(url="ssh://git@fleet.example:22/fleet", ssh_key="/etc/fleetcd/id_ed25519")
    return agent_config(device, remote=remote, trust=pinned_trust(fleet, "/etc/fleetcd/keys"), **settings)  # type: ignore[arg-type]


def test_robot_pins_only_the_trust_roots_root_keys_and_the_agent_reads_the_same_config(
    tmp_path: Path,
) -> None:
    _, fleet = _fleet(tmp_path, threshold=2)
    config = _config(fleet)
    path = tmp_path / "agent.yaml"
    path.write_text(render_agent_config(config, path=str(path)))
    read = load_config(path)
    assert read == config
    assert read.trust.fleet == "acme"  # another fleet's desired state is refused
    assert (read.trust.root.version, read.trust.root.threshold, read.trust.root.keys) == (
        1,
        1,
        [PLACEHOLDER_ROOT],
    )
    # controller, release signers, approvers: learned from the signed chain, never pinned
    assert set(read.trust.model_dump()) == {"keys_dir", "fleet", "root"}


def test_settings_left_at_defaults_are_not_written_yet_read_back_as_defaults(tmp_path: Path) -> None:
    _, fleet = _fleet(tmp_path)
    text = render_agent_config(_config(fleet))
    assert "executor:" not in text and "poll:" not in text and "docker:" not in text
    assert text.startswith("# yaml-language-server: $schema=")
    read = load_document("agent.yaml", text.encode(), AgentConfig).model
    assert (read.executor, read.poll.interval_seconds, read.state_dir) == ("tarball", 60, None)


def test_note_with_newlines_cannot_smuggle_a_setting_into_agent_yaml(tmp_path: Path) -> None:
    _, fleet = _fleet(tmp_path)
    text = render_agent_config(_config(fleet), note="enrolled by ops\nexecutor: docker\nstate_dir: /tmp/x")
    read = load_document("agent.yaml", text.encode(), AgentConfig).model
    assert (read.executor, read.state_dir) == ("tarball", None)
    assert "# executor: docker" in text


@pytest.mark.parametrize(
    "device", ["../etc", "a b", "", "x" * 300], ids=["traversal", "space", "empty", "long"]
)
def test_unsafe_device_id_never_becomes_an_agent_config(tmp_path: Path, device: str) -> None:
    _, fleet = _fleet(tmp_path)
    with pytest.raises(ValueError, match="device"):
        _config(fleet, device)


def test_demo_robot_is_provisioned_through_the_shared_writer(tmp_path: Path) -> None:
    root, fleet = _fleet(tmp_path)
    (root / "keys").mkdir()
    (root / "keys" / "controller.asc").write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    probe = tmp_path / "probe"
    probe.write_text("")
    home = tmp_path / "robots" / "amr-ber-01"
    robot = Robot(id="amr-ber-01", cohort="canary", site="berlin", revision=3, port=1)
    path = provision(robot, home, server=tmp_path / "fleet.git", fleet_root=root, probe=probe)
    read = load_config(path)
    assert read.trust == pinned_trust(fleet, str((home / "keys").resolve()))
    assert (home / "keys" / "controller.asc").is_file()
    assert read.remote.url == str((tmp_path / "fleet.git").resolve())
    assert read.poll.interval_seconds == 1 and read.exec_allowlist == [str(probe.resolve())]
