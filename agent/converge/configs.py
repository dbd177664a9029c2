"""Config instances of the converge step *applying*, and the drift check of every cycle.

When a release declares a config schema and the bundle carries this robot's merged values,
:func:`write_app_config` renders them (:mod:`agent.configfiles.write`), writes the file atomically
where the app reads it, and records path, sha256 and bytes in ``configs.json``. Each cycle
:func:`check_drift` compares the files with what was written: a local edit is reported as drift,
and with ``config_drift: restore`` the written bytes are put back.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from agent.configfiles.write import config_path, drifted, render, sha256_hex, write_config
from agent.errors import CorruptState
from agent.state.atomic import read_bytes, write_atomic
from fleetcd.models.base import FrozenModel
from fleetcd.models.release import Release

CONFIGS_FILE_MODE = 0o600


class WrittenConfig(FrozenModel):
    app: str
    sha256: str
    data_b64: str  # the bytes written, so ``restore`` needs neither the bundle nor the network


class ConfigLedger(FrozenModel):
    format: int = 1
    files: dict[str, WrittenConfig] = Field(default_factory=dict)


def load_ledger(path: Path) -> ConfigLedger:
    raw = read_bytes(path)
    if raw is None:
        return ConfigLedger()
    try:
        return ConfigLedger.model_validate_json(raw)
    except ValidationError as exc:
        raise CorruptState(path, f"not a config ledger: {exc.errors()[0]['msg']}") from exc


def _save(path: Path, ledger: ConfigLedger) -> None:
    write_atomic(path, ledger.model_dump_json(indent=2).encode() + b"\n", mode=CONFIGS_FILE_MODE)


def write_app_config(
    ledger_path: Path, app: str, app_dir: Path, release: Release, values: dict[str, Any] | None
) -> Path | None:
    """Write the app's config file (when the release has a schema and values exist); its path.

    A release without config stops the drift check of the file an older release of the app wrote.
    """
    ledger = load_ledger(ledger_path)
    files = {k: v for k, v in ledger.files.items() if v.app != app}  # one file per app: the newest
    if release.config is None or values is None:
        if files != ledger.files:
            _save(ledger_path, ConfigLedger(files=files))
        return None
    path = config_path(app_dir, release.config)
    data = render(values, release.config)
    write_config(path, data)
    files[str(path)] = WrittenConfig(
        app=app, sha256=sha256_hex(data), data_b64=base64.b64encode(data).decode()
    )
    _save(ledger_path, ConfigLedger(files=files))
    return path


def check_drift(ledger_path: Path, *, restore: bool) -> dict[str, list[str]]:
    """{app: [paths edited since written]}; with ``restore`` the written bytes are put back first."""
    ledger = load_ledger(ledger_path)
    changed = drifted({Path(p): w.sha256 for p, w in ledger.files.items()})
    out: dict[str, list[str]] = {}
    for path in changed:
        written = ledger.files[str(path)]
        if restore:
            write_config(path, base64.b64decode(written.data_b64))
            continue
        out.setdefault(written.app, []).append(str(path))
    return out
