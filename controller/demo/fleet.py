"""The demo fleet's content: the template's six robots, their configs, releases, the rollout, artifacts.

``fleetcd init`` gives the fleet its robots (Berlin, Chicago, Tokyo; hardware revisions 1 and 2),
cohorts (staging: amr-ber-01; canary: amr-chi-01, amr-tyo-02; production: every amr-x) and
configs. :func:`adapt_template` swaps the template's placeholder release and rollout for the
demo's real ones: each robot gets a device config with the port its app listens on, releases carry
real tarballs served by :class:`ArtifactServer` (the stdlib HTTP server, in a thread), and the
rollout goes through three waves with soak times of seconds instead of hours. Files are written as
a person would write them; the demo then runs the real ``fleetcd`` commands over them.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from controller.demo.robotapp import BROKEN_MAP, Artifact, app_tarball
from fleetcd.loading.documents import load_document
from fleetcd.models.cohort import Cohort
from fleetcd.models.device import Device

APP = "navstack"
ROLLOUT = "navstack"
WAVES = ("staging", "canary", "production")
SOAK_SECONDS = 2  # per wave; a real fleet soaks for hours
WATCH_SECONDS = 2  # the health watch after each switch; the template says 60
# A failing probe gets this many tries, a second apart: an unhealthy robot takes longer to give up
# than a healthy one to pass, as in the field, where a canary's failure usually arrives last.
PROBE_ATTEMPTS = 4
RELEASE_NOTES = {
    "1.0.0": "The navigation stack: planner, localization, obstacle model.",
    "1.1.0": "A faster map loader. Reads the new aisle-layout format; tested on the Berlin test bay.",
}


@dataclass(frozen=True)
class Robot:
    """One robot of the demo fleet, as the live table shows it."""

    id: str
    cohort: str
    site: str
    revision: int
    port: int  # its app's port (device config): six robots share this machine's localhost


def q(text: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    return json.dumps(text)


def read_robots(root: Path, ports: list[int]) -> list[Robot]:
    """The fleet's robots from ``devices/``, each with its first cohort among the waves."""
    members: dict[str, list[str]] = {}
    for wave in WAVES:
        path = root / "cohorts" / f"{wave}.yaml"
        cohort = load_document(str(path), path.read_bytes(), Cohort).model
        members[wave] = list(cohort.devices)
    robots = []
    for path, port in zip(sorted((root / "devices").glob("*.yaml")), ports, strict=False):
        device = load_document(str(path), path.read_bytes(), Device).model
        first = next((w for w in WAVES if device.id in members[w]), "production")
        robots.append(Robot(device.id, first, device.site or "-", device.hardware.revision, port))
    return robots


def adapt_template(root: Path) -> None:
    """Drop the template's placeholder release (fake artifacts) and rollout (hour-long soaks)."""
    (root / "releases" / APP / "1.0.0.yaml").unlink()
    (root / "rollouts" / f"{ROLLOUT}.yaml").unlink()


def write_device_configs(root: Path, robots: list[Robot]) -> None:
    """``configs/navstack/device-<id>.yaml``: the port of each robot's app (plus the template's values)."""
    for robot in robots:
        path = root / "configs" / APP / f"device-{robot.id}.yaml"
        extra = ""
        if path.exists():  # amr-tyo-02 already has its own map and speed in the template
            extra = "".join(
                line + "\n"
                for line in path.read_text().splitlines()
                if line.startswith("  ") and "port" not in line
            )
        path.write_text(
            "# yaml-language-server: $schema=https://fleetcd.dev/schemas/v1/configinstance.json\n"
            f"# {robot.id}'s own values. The demo runs six robots on one machine, so each app gets a port.\n"
            "apiVersion: fleetcd.dev/v1\nkind: ConfigInstance\n"
            f"app: {APP}\nscope: device\ntarget: {robot.id}\nvalues:\n{extra}  port: {robot.port}\n"
        )


def tarball_artifact(artifact: Artifact, url: str, python: str) -> str:
    """The release's ``artifacts`` entry for a packed app served at ``url``."""
    return (
        f"  - kind: app_tarball\n    name: {APP}\n    url: {q(url)}\n"
        f"    sha256: {q(artifact.sha256)}\n    size: {artifact.size}\n"
        f"    command: [{q(python)}, app.py]\n"
    )


def image_artifact(image: str, command: list[str]) -> str:
    """The release's ``artifacts`` entry for a container image pinned by digest (``--docker``)."""
    return (
        f"  - kind: container_image\n    name: {APP}\n    image: {q(image)}\n"
        f"    command: [{', '.join(q(a) for a in command)}]\n"
    )


def write_release(root: Path, version: str, artifact: str, probe: Path) -> Path:
    """``releases/navstack/<version>.yaml`` shipping ``artifact`` (an ``artifacts`` list entry)."""
    path = root / "releases" / APP / f"{version}.yaml"
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["map", "max_speed_mps", "log_level", "port"],
        "properties": {
            "map": {"type": "string", "minLength": 1},
            "max_speed_mps": {"type": "number", "minimum": 0.1, "maximum": 2.0},
            "obstacle_padding_m": {"type": "number", "minimum": 0.0, "maximum": 1.0},
            "log_level": {"type": "string", "enum": ["debug", "info", "warning", "error"]},
            "port": {"type": "integer", "minimum": 1024, "maximum": 65535},
        },
    }
    path.write_text(
        "# yaml-language-server: $schema=https://fleetcd.dev/schemas/v1/release.json\n"
        "# Immutable once merged: its signatures cover these exact bytes.\n"
        f"apiVersion: fleetcd.dev/v1\nkind: Release\napp: {APP}\nversion: {q(version)}\n"
        f"notes: {q(RELEASE_NOTES.get(version, ''))}\n"
        f"artifacts:\n{artifact}"
        "compatibility:\n  families: [amr]\n  models: [amr-x]\n  hardware_revision: {min: 1, max: 2}\n"
        "# After the switch the app must keep running and the probe pass, or the robot rolls back.\n"
        "# On a real robot: `type: http` on http://127.0.0.1:8080/healthz. Six demo robots share one\n"
        "# machine, so a robot-side tool GETs the port its robot's agent names.\n"
        f"health:\n  watch_seconds: {WATCH_SECONDS}\n  probes:\n"
        f"    - type: exec\n      name: healthz\n      argv: [{q(str(probe))}]\n"
        f"      timeout_seconds: 2\n      initial_delay_seconds: 1\n      attempts: {PROBE_ATTEMPTS}\n"
        "      interval_seconds: 1\n"
        "rollback:\n  target: previous\n  automatic: true\n"
        f"config:\n  path: {APP}.json\n  format: json\n  schema: {json.dumps(schema)}\n"
    )
    return path


def write_rollout(root: Path, version: str) -> Path:
    """``rollouts/navstack.yaml``: ``version`` through staging, canary and production."""
    waves = "".join(
        f"    - name: {wave}\n      cohort: {wave}\n      soak_seconds: {SOAK_SECONDS}\n"
        f"      failure_threshold: {{{'percent: 10' if wave == 'production' else 'count: 0'}}}\n"
        for wave in WAVES
    )
    path = root / "rollouts" / f"{ROLLOUT}.yaml"
    path.write_text(
        "# yaml-language-server: $schema=https://fleetcd.dev/schemas/v1/rollout.json\n"
        "# navstack to the whole fleet in three waves; any failure in staging or canary halts it.\n"
        f"apiVersion: fleetcd.dev/v1\nkind: Rollout\nname: {ROLLOUT}\napp: {APP}\nrelease: {q(version)}\n"
        "targets:\n  cohorts: [staging, canary, production]\n"
        f"strategy:\n  type: waves\n  waves:\n{waves}"
        "schedule:\n  # The demo does not wait for amr-chi-02's night-time maintenance window.\n"
        "  respect_maintenance_windows: false\n"
        "on_halt: rollback_all\npaused: false\naborted: false\npromote: 0\n"
    )
    return path


def set_default_value(root: Path, key: str, old: str, new: str) -> Path:
    """Change one value of ``configs/navstack/default.yaml`` (``key: old`` → ``key: new``)."""
    path = root / "configs" / APP / "default.yaml"
    text = path.read_text()
    line = f"  {key}: {old}\n"
    if text.count(line) != 1:
        raise ValueError(f"{path}: expected one line {line.strip()!r}")
    path.write_text(text.replace(line, f"  {key}: {new}\n"))
    return path


def written_config(state_dir: Path) -> dict[str, Any] | None:
    """The navstack config file a robot's agent wrote (``config.path`` of the demo's releases)."""
    path = state_dir / "apps" / APP / "config" / f"{APP}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pack(folder: Path, version: str) -> Artifact:
    """The app of ``version``; 1.1.0 carries the map-loader bug."""
    broken = (BROKEN_MAP,) if version == "1.1.0" else ()
    return app_tarball(folder, version, unreadable_maps=broken)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class ArtifactServer:
    """Serves a folder over HTTP on 127.0.0.1 (a free port) from a daemon thread."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-artifacts", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, artifact: Artifact) -> str:
        return f"http://127.0.0.1:{self.port}/{artifact.path.relative_to(self.folder)}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
