"""What a real robot is provisioned with, over a controller world: the fleet's pinned root of trust
(version 1's root keys), their public keys in a ``keys_dir`` and an ``agent.yaml``
(:class:`fleetcd.models.agent.AgentConfig`).

:func:`trust_pins` and :func:`write_keys_dir` are shared by every world that runs the real agent
(:mod:`tests.sim.agent` too). :func:`provisioned_fleet` is the scenario fleet
(:func:`tests.sim.world.make_world`) reconciled once by the real controller, so every robot has a
signed desired-state commit on the server (``stg-1`` gets nav 1.0.0 in the staging wave), plus
:class:`ProvisionedFleet` to provision any of its robots.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pygit2

from controller.delivery.write import delivery_ref
from fleetcd.git.objects import read_blob
from fleetcd.models import TrustRoot
from fleetcd.models.agent import AgentConfig
from fleetcd.operator.agentconfig import pinned_trust
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.sim.robots import DESIRED_FILES
from tests.sim.world import ControllerWorld, make_world

ROBOT = "stg-1"  # the scenario's staging robot: the first to get nav 1.0.0


def first_trust_root(fleet: FleetRepoBuilder) -> TrustRoot:
    """Version 1 of the builder's trust root: what the test worlds provision their robots with."""
    return TrustRoot.model_validate(fleet.trust_versions[0])


def trust_pins(root: TrustRoot | FleetRepoBuilder, keys_dir: Path) -> dict[str, Any]:
    """The ``trust`` section of ``agent.yaml`` pinning ``root``'s root keys (a builder: its version 1),
    their public keys in ``keys_dir``.

    Made by the function every robot is provisioned through (``fleetcd robot add``, the demo), as
    a dict so a test can override one pin.
    """
    model = first_trust_root(root) if isinstance(root, FleetRepoBuilder) else root
    pins: dict[str, Any] = pinned_trust(model, str(keys_dir)).model_dump(mode="json")
    return pins


def write_keys_dir(folder: Path, keys: Mapping[str, bytes]) -> Path:
    """The armored public keys (``keys/NAME.asc`` or ``NAME`` → bytes) as files of ``folder``."""
    folder.mkdir(parents=True)
    for path, data in keys.items():
        (folder / Path(path).name).write_bytes(data)
    return folder


@dataclass
class ProvisionedFleet:
    """A controller-written fleet repository plus what each robot is provisioned with."""

    world: ControllerWorld
    root: Path

    @property
    def server(self) -> Path:
        return self.world.server

    def keys_dir(self, extra: dict[str, bytes] | None = None) -> Path:
        """The fleet's public keys (plus ``extra`` name → armored key) as a robot's ``keys_dir``."""
        keys = {Path(path).name: data for path, data in self.world.sim.keys.items()} | (extra or {})
        return write_keys_dir(self.root / f"keys-{len(list(self.root.glob('keys-*')))}", keys)

    def config(
        self,
        device: str = ROBOT,
        *,
        url: str | None = None,
        remote: dict[str, Any] | None = None,
        extra_keys: dict[str, bytes] | None = None,
        **trust: Any,
    ) -> AgentConfig:
        """``agent.yaml`` of ``device`` pinning the fleet's anchors; ``trust`` overrides pins."""
        pins = trust_pins(self.world.fleet, self.keys_dir(extra_keys)) | trust
        return AgentConfig.model_validate(
            {
                "apiVersion": "fleetcd.dev/v1",
                "kind": "AgentConfig",
                "device": device,
                "remote": {"url": url or str(self.server), **(remote or {})},
                "trust": pins,
                "state_dir": str(self.root / f"state-{device}"),
            }
        )

    def repo_dir(self, device: str = ROBOT) -> Path:
        return self.root / f"state-{device}" / "repo.git"

    def server_files(self, device: str = ROBOT) -> dict[str, bytes | None]:
        repo = pygit2.Repository(str(self.server))
        ref = delivery_ref(device, namespaces=self.world.settings.namespaces)
        return {name: read_blob(repo, ref, name) for name in DESIRED_FILES}


def provisioned_fleet(
    root: Path,
    keys: KeyFactory,
    *,
    namespaces: bool = True,
    configure: Callable[[FleetRepoBuilder], None] | None = None,
    reconcile: bool = True,
) -> ProvisionedFleet:
    """The scenario fleet on a bare server, reconciled once by the real controller."""
    world = make_world(root / "world", keys, configure=configure)
    world.settings = replace(world.settings, namespaces=namespaces)
    world.sim.namespaces = namespaces
    if reconcile:
        world.reconcile()
    return ProvisionedFleet(world, root)
