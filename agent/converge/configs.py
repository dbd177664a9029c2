"""Config instances: written at the switch, put back on rollback, checked for drift every cycle.

When a release declares a config schema and the bundle carries this robot's merged values,
:meth:`AppConfigs.write` renders them (:mod:`agent.configfiles.write`), writes the file atomically
where the app reads it, and records path, sha256 and bytes in the ledger ``configs.json``. Each
cycle :func:`check_drift` compares the files with the ledger: a local edit is reported as drift,
and with ``config_drift: restore`` the written bytes are put back.

Config follows the version, so a robot runs exactly the old or the new version — code *and*
config. Before a deployment overwrites anything, the outgoing version's side is saved as a
snapshot, ``config-history/<app>/<version>.json`` (``none.json`` when nothing ran): the bytes of the
file about to be replaced (or that it did not exist) and the app's ledger entries. It is taken once
per deployment (a step redone after a crash must not save the new bytes as the old ones).
:meth:`AppConfigs.rollback` puts the snapshots back, newest first — files, then the ledger, so the
restored hashes are what drift is checked against — and is idempotent, so a rollback redone after
a kill -9 ends the same. Snapshots of versions no longer on the robot are pruned at commit.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from agent.configfiles.write import config_path, drifted, render, sha256_hex, write_config
from agent.paths import AgentPaths
from agent.state.atomic import fsync_dir, read_bytes, read_model, write_atomic
from fleetcd.errors import ApplyError
from fleetcd.models.base import FrozenModel
from fleetcd.models.release import Release

log = logging.getLogger(__name__)
CONFIGS_FILE_MODE = 0o600
NO_VERSION = "none"  # the snapshot name when nothing ran before (SemVer never spells it)


class WrittenConfig(FrozenModel):
    app: str
    sha256: str
    data_b64: str  # the bytes written, so ``restore`` needs neither the bundle nor the network


class ConfigLedger(FrozenModel):
    format: int = 1
    files: dict[str, WrittenConfig] = Field(default_factory=dict)


class SavedFile(FrozenModel):
    path: str
    data_b64: str | None  # None: the file did not exist


class ConfigSnapshot(FrozenModel):
    """The config side of ``version`` of ``app``, saved before deployment ``taken_by`` replaced it."""

    format: int = 1
    app: str
    version: str | None
    taken_by: str  # deployment id
    replaced_by: str | None  # the version that deployment installs (None: a rollback to nothing)
    files: list[SavedFile]
    ledger: dict[str, WrittenConfig]  # the app's ledger entries as they were


def load_ledger(path: Path) -> ConfigLedger:
    return read_model(path, ConfigLedger, "a config ledger") or ConfigLedger()


def rebuild_ledger(
    paths: AgentPaths, running: Mapping[str, tuple[Release, dict[str, Any] | None]]
) -> list[str]:
    """Write a new ledger from ``{app: (release, values)}`` of the versions running now (the ledger
    was lost): the bytes :meth:`AppConfigs.write` wrote for them, rendered again. Its paths."""
    files: dict[str, WrittenConfig] = {}
    for app, (release, values) in sorted(running.items()):
        try:
            path = AppConfigs(paths, app).path_for(release)
        except ApplyError:  # a path the switch refused as well: nothing was written there
            continue
        if path is None or release.config is None or values is None:
            continue
        data = render(values, release.config)
        files[str(path)] = WrittenConfig(app=app, sha256=sha256_hex(data), data_b64=_b64(data))
    _save(paths.config_hashes, ConfigLedger(files=files))
    return sorted(files)


def _save(path: Path, ledger: ConfigLedger) -> None:
    write_atomic(path, ledger.model_dump_json(indent=2).encode() + b"\n", mode=CONFIGS_FILE_MODE)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class AppConfigs:
    """One app's config files, its entries in the ledger and its snapshots."""

    def __init__(self, paths: AgentPaths, app: str) -> None:
        self.app = app
        self.app_dir = paths.apps_dir / app
        self.ledger_path = paths.config_hashes
        self.history = paths.config_history / app

    def path_for(self, release: Release) -> Path | None:
        return None if release.config is None else config_path(self.app_dir, release.config)

    def write(
        self,
        release: Release,
        values: dict[str, Any] | None,
        *,
        deployment_id: str,
        outgoing: str | None,
    ) -> Path | None:
        """Save ``outgoing``'s side (once per deployment), then write ``release``'s file; its path.

        A release without config (or without values for this robot) writes nothing and stops the
        drift check of the file an older release of the app wrote.
        """
        path = self.path_for(release) if values is not None else None
        self._snapshot(outgoing, deployment_id, release.version, [] if path is None else [path])
        ledger = load_ledger(self.ledger_path)
        files = {k: v for k, v in ledger.files.items() if v.app != self.app}  # one file per app
        if path is None or release.config is None or values is None:
            if files != ledger.files:
                _save(self.ledger_path, ConfigLedger(files=files))
            return None
        data = render(values, release.config)
        write_config(path, data)
        files[str(path)] = WrittenConfig(app=self.app, sha256=sha256_hex(data), data_b64=_b64(data))
        _save(self.ledger_path, ConfigLedger(files=files))
        return path

    def restorable(self, version: str, *, replaced_by: str | None) -> bool:
        """Whether ``version``'s config can be put back over ``replaced_by``'s (a rollback target)."""
        snapshot = self._load(version)
        return snapshot is not None and snapshot.replaced_by == replaced_by

    def rollback(self, *, deployment_id: str, failed: str, previous: str | None, target: str | None) -> None:
        """Undo ``deployment_id``'s write (back to ``previous``), then, for an older ``target``,
        ``previous``'s own (back to ``target``). ``failed``'s side is saved first, for
        :meth:`undo_rollback`. Idempotent; a snapshot that is not there means that write never
        happened."""
        steps = []
        mine = self._load(previous)
        if mine is not None and mine.taken_by == deployment_id and mine.replaced_by == failed:
            steps.append(mine)
        if target is not None and target != previous:
            older = self._load(target)
            if older is not None and older.replaced_by == previous:
                steps.append(older)
        if not steps:
            return
        touched = list(dict.fromkeys(Path(f.path) for step in steps for f in step.files))
        self._snapshot(failed, deployment_id, target, touched)
        for step in steps:
            self._restore(step)

    def undo_rollback(self, *, deployment_id: str, failed: str) -> None:
        """The rollback could not bring the old version back and ``failed`` still runs: give it its
        config again (what :meth:`rollback` saved)."""
        saved = self._load(failed)
        if saved is not None and saved.taken_by == deployment_id:
            self._restore(saved)

    def prune(self, keep: set[str | None]) -> None:
        """Forget snapshots of versions the executor no longer keeps (called at commit)."""
        names = {f"{_name(v)}.json" for v in keep}
        if self.history.is_dir():
            for file in self.history.glob("*.json"):
                if file.name not in names:
                    file.unlink(missing_ok=True)

    # --- internals --------------------------------------------------------------------------------

    def _file(self, version: str | None) -> Path:
        return self.history / f"{_name(version)}.json"

    def _load(self, version: str | None) -> ConfigSnapshot | None:
        return read_model(self._file(version), ConfigSnapshot, "a config snapshot")

    def _snapshot(
        self, version: str | None, deployment_id: str, incoming: str | None, paths: list[Path]
    ) -> None:
        existing = self._load(version)
        if existing is not None and existing.taken_by == deployment_id:
            return  # taken before this deployment's first write; now the file may hold the new bytes
        files = []
        for path in paths:
            data = read_bytes(path)
            files.append(SavedFile(path=str(path), data_b64=None if data is None else _b64(data)))
        ledger = {k: v for k, v in load_ledger(self.ledger_path).files.items() if v.app == self.app}
        snapshot = ConfigSnapshot(
            app=self.app,
            version=version,
            taken_by=deployment_id,
            replaced_by=incoming,
            files=files,
            ledger=ledger,
        )
        self.history.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self._file(version), snapshot.model_dump_json(indent=2).encode(), mode=CONFIGS_FILE_MODE)

    def _restore(self, snapshot: ConfigSnapshot) -> None:
        for saved in snapshot.files:
            path = Path(saved.path)
            if saved.data_b64 is None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    fsync_dir(path.parent)
            else:
                write_config(path, base64.b64decode(saved.data_b64))
        ledger = load_ledger(self.ledger_path)
        files = {k: v for k, v in ledger.files.items() if v.app != self.app}
        files.update(snapshot.ledger)
        _save(self.ledger_path, ConfigLedger(files=files))


def _name(version: str | None) -> str:
    return NO_VERSION if version is None else version


def check_drift(ledger_path: Path, *, restore: bool) -> dict[str, list[str]]:
    """{app: [paths edited since written]}; with ``restore`` the written bytes are put back first,
    and only the files that could not be put back are listed."""
    ledger = load_ledger(ledger_path)
    changed = drifted({Path(p): w.sha256 for p, w in ledger.files.items()})
    out: dict[str, list[str]] = {}
    for path in changed:
        written = ledger.files[str(path)]
        if restore:
            try:
                write_config(path, base64.b64decode(written.data_b64))
                continue
            except OSError as exc:  # a folder where the file was, a read-only mount: still drift
                log.warning("%s: config drift not restored: %s", path, exc)
        out.setdefault(written.app, []).append(str(path))
    return out
