"""One robot's ``agent.yaml`` (kind AgentConfig), written the same way by every path that makes one.

``fleetcd robot add`` (a real robot), ``fleetcd demo`` (its local robots) and the test worlds all
provision a robot through here, so there is exactly one place that decides what a robot pins:
:func:`pinned_trust` turns the fleet's trust root into the ``trust`` section (its root keys only),
:func:`agent_config` assembles the whole document, and :func:`render_agent_config` turns it into
YAML text that is loaded back through the strict loader (strict YAML, the JSON Schema, the model)
before anyone can write it, so a provisioning bug is an error here and never a robot that refuses to start.

Pure: models in, text out. Copying the public keys to the robot's ``keys_dir`` and writing the
file are the caller's I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from fleetcd.errors import InvalidContent
from fleetcd.loading.documents import load_document
from fleetcd.loading.emit import dump_yaml
from fleetcd.models import TrustRoot
from fleetcd.models.agent import (
    AgentConfig,
    DockerSettings,
    PinnedRoot,
    PinnedTrust,
    PollSettings,
    RemoteSettings,
)
from fleetcd.models.base import API_VERSION_V1

AGENT_CONFIG_FILE = "agent.yaml"
SCHEMA_URL = "https://fleetcd.dev/schemas/v1/agentconfig.json"


def pinned_trust(root: TrustRoot, keys_dir: str) -> PinnedTrust:
    """What a robot pins at provisioning: trust-root ``root``'s root keys and threshold (its public
    keys go to ``keys_dir``); the robot learns every other key from the chain they sign."""
    return PinnedTrust(
        keys_dir=keys_dir,
        fleet=root.fleet,
        root=PinnedRoot(
            version=root.version, threshold=root.root.threshold, keys=sorted(root.root.fingerprints)
        ),
    )


def agent_config(
    device: str,
    *,
    remote: RemoteSettings,
    trust: PinnedTrust,
    state_dir: str | None = None,
    executor: Literal["tarball", "docker"] = "tarball",
    poll: PollSettings | None = None,
    exec_allowlist: Sequence[str] = (),
    docker: DockerSettings | None = None,
) -> AgentConfig:
    """The AgentConfig of ``device``; unset settings keep the model's documented defaults."""
    return AgentConfig.model_validate(
        {
            "apiVersion": API_VERSION_V1,
            "kind": "AgentConfig",
            "device": device,
            "remote": remote,
            "trust": trust,
            "state_dir": state_dir,
            "executor": executor,
            "poll": poll or PollSettings(),
            "exec_allowlist": list(exec_allowlist),
            "docker": docker or DockerSettings(),
        }
    )


def render_agent_config(config: AgentConfig, *, path: str = AGENT_CONFIG_FILE, note: str = "") -> str:
    """``config`` as the text of ``agent.yaml``, proven to load back as the same model.

    Settings left at their defaults are not spelled out (docs/agent.md lists them), so the file
    holds what was decided for this robot. ``note`` becomes comment lines under the schema
    modeline. Raises :class:`InvalidContent` (naming ``path``) if the text would not load back.
    """
    data = config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data = {"apiVersion": config.api_version, "kind": config.kind, **data}  # always written first
    header = f"# yaml-language-server: $schema={SCHEMA_URL}\n"
    header += "".join(f"# {line}".rstrip() + "\n" for line in note.splitlines())
    text = header + dump_yaml(data)
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: a non-UTF-8 byte decoded from argv or a path
        raise InvalidContent.at(
            path, f"holds {text[exc.start : exc.end]!r}, which is not UTF-8 text"
        ) from None
    loaded = load_document(path, raw, AgentConfig)
    if loaded.model != config:
        raise InvalidContent.at(path, "the text written does not load back as the config it was made from")
    return text
