"""Rendering and writing an app's config file, and finding files edited since they were written.

Rendering is deterministic (sorted keys, fixed layout): the same values always give the same bytes,
so the sha256 recorded after a write is what :func:`drifted` compares against, and a rewrite with
unchanged values is a no-op for the app. Paths: relative ones live under ``<app_dir>/config``;
absolute ones are kept (the app may read ``/etc/acme/robot.yaml``); a ``..`` component is refused
in both, so a release cannot walk a config file out of where it says it goes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from agent.state.atomic import DEFAULT_FILE_MODE, write_atomic
from fleetcd.compat import file_sha256
from fleetcd.errors import ApplyError
from fleetcd.models.release import ConfigSchema

CONFIG_DIR = "config"  # relative config paths live in <app_dir>/config


class _PlainDumper(yaml.SafeDumper):
    """safe_dump that writes a value shared twice in full instead of as an anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def config_path(app_dir: Path, schema: ConfigSchema) -> Path:
    """Where the config file of ``schema`` goes; ApplyError naming the path when it may not."""
    raw = schema.path
    path = PurePosixPath(raw)
    if "\x00" in raw or ".." in path.parts:
        raise ApplyError(f"config path {raw!r} (release config.path) must not contain '..' or NUL")
    if path.is_absolute():
        if path == PurePosixPath("/"):
            raise ApplyError(f"config path {raw!r} (release config.path) names the root directory")
        return Path(path)
    if not path.parts:
        raise ApplyError(f"config path {raw!r} (release config.path) names no file")
    return app_dir / CONFIG_DIR / path


def render(values: Mapping[str, Any], schema: ConfigSchema) -> bytes:
    """``values`` as the bytes of a ``schema.format`` file, keys sorted."""
    if schema.format == "json":
        return (json.dumps(dict(values), sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    text = yaml.dump(
        dict(values), Dumper=_PlainDumper, sort_keys=True, default_flow_style=False, allow_unicode=True
    )
    return text.encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """What :func:`drifted` expects a file written with ``data`` to hash to."""
    return hashlib.sha256(data).hexdigest()


def write_config(path: Path, data: bytes, *, mode: int = DEFAULT_FILE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically (the app sees the old file or the new, whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode=mode)


def drifted(paths_to_sha256: Mapping[Path, str]) -> list[Path]:
    """The files that no longer hold what was written: edited, replaced, deleted or unreadable."""
    changed = []
    for path, expected in sorted(paths_to_sha256.items()):
        try:
            with path.open("rb") as handle:
                actual = file_sha256(handle)
        except OSError:
            changed.append(path)  # deleted, or something we cannot read: not what was written
            continue
        if actual != expected:
            changed.append(path)
    return changed
