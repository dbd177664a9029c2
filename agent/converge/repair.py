"""Corrupt agent state: report it, set it aside, rebuild it from what the disk shows.

A state file that exists but does not parse (0 bytes after a lost write, garbage from a bad sector,
a format this agent does not read) must not stop the robot: with a corrupt journal no report is
built and nothing converges, and nothing would ever repair it. Nor may it be taken for "nothing
there" silently. So at the start of each cycle every state file is read, and each corrupt one is

1. reported: a :class:`~agent.errors.StateRepaired` error of the cycle (the status report's
   ``last_error``, the log; ``fleetcd-agent once`` exits 4 for that cycle);
2. set aside: renamed ``<name>.corrupt-<UTC time>`` beside it (:func:`agent.state.atomic.set_aside`),
   kept for forensics, never read again;
3. rebuilt from what the disk shows:

=====================  ==========================================================================
``desired.json``       nothing: the next poll fetches the desired state again
``status.json``        nothing: the next report's seq continues above the last push (push.json)
``outbox``             nothing: this cycle's report replaces the lost one
``trust.json``         ``desired.json``, the last accepted commit (written before the trust state,
                       so never older): its root's serial, signed time and bundle digest; the next
                       poll verifies it again with gpg. Its trust-root chain is verified again
                       with gpg from the root keys ``agent.yaml`` pins, and the newest version it
                       reaches is held again (the version that commit was accepted under), so a
                       replayed older trust root stays refused. Without the cache, the serial and
                       trust-root version of the last report (a floor the chain walked from the
                       pin must reach), or nothing (first-boot rules: any validly signed serial
                       is accepted once)
``journal/<app>.json`` the executor: the version active on disk (the tarball executor's ``current``
                       link and ``run.json``, the Docker executor's container), as a settled,
                       healthy entry. The converge machine then adopts it when it is the desired
                       version and installs the desired one beside it otherwise. Nothing active:
                       an empty journal
``configs.json``       the verified bundle: the config of each app whose active version is the one
                       the bundle assigns it, rendered again (what was written at its switch)
=====================  ==========================================================================

:func:`repair_files` runs before sync (trust state, cache, outbox, report); :func:`repair_app_state`
once the executor and the verified desired state are known (journals, config ledger).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.converge.configs import load_ledger, rebuild_ledger
from agent.errors import CorruptState, StateRepaired
from agent.executors.base import Executor
from agent.paths import AgentPaths
from agent.report.outbox import Outbox
from agent.report.status import load_status
from agent.state.atomic import set_aside
from agent.state.journal import Journal, JournalEntry
from agent.sync.accept import Desired, read_cache
from agent.trustcheck import TrustState, load_keyring, load_trust_state, pin_of, save_trust_state
from fleetcd.desired import SignedRoot
from fleetcd.desired.chain import parse_trust_file
from fleetcd.desired.verify import verify_trust
from fleetcd.errors import InvalidContent, SetupError
from fleetcd.models.agent import AgentConfig
from fleetcd.models.release import Release
from fleetcd.trust.rootchain import TrustedRoot
from fleetcd.vocabulary import Activity

log = logging.getLogger(__name__)

RECOVERED_ID = "recovered-from-disk"  # the rebuilt journal entry's deployment (never reported)


def repair_files(paths: AgentPaths, now: datetime, config: AgentConfig | None = None) -> list[StateRepaired]:
    """Before sync: the desired-state cache, last report, outbox and trust state (in that order:
    the trust state is rebuilt from the other three). ``config`` (the agent's; its pinned root keys)
    lets the trust-root version held be rebuilt too; without it the robot walks from its pin again."""
    repaired: list[StateRepaired] = []

    def check(path: Path, read: Callable[[], object], rebuild: str | Callable[[], str]) -> None:
        try:
            read()
        except CorruptState as exc:
            aside = set_aside(path, now)
            found = StateRepaired(exc, aside, rebuild if isinstance(rebuild, str) else rebuild())
            log.error("%s", found)
            repaired.append(found)

    check(paths.desired_cache, lambda: read_cache(paths.desired_cache), "fetched again by the next poll")
    check(paths.status_file, lambda: load_status(paths.status_file, strict=True), "a new report replaces it")
    check(paths.outbox, Outbox(paths.outbox).pending, "this cycle's report replaces it")
    check(paths.trust_file, lambda: load_trust_state(paths.trust_file), lambda: _rebuild_trust(paths, config))
    return repaired


def repair_app_state(
    paths: AgentPaths, executor: Executor, desired: Desired, now: datetime
) -> list[StateRepaired]:
    """Once the executor and the verified desired state are known: each app's journal and the
    config ledger."""
    repaired: list[StateRepaired] = []
    for app in paths.journaled_apps():
        journal = Journal(paths.journal(app))
        try:
            journal.load()
        except CorruptState as exc:
            aside = set_aside(journal.path, now)
            found = StateRepaired(exc, aside, _rebuild_journal(journal, app, executor, now))
            log.error("%s", found)
            repaired.append(found)
    try:
        load_ledger(paths.config_hashes)
    except CorruptState as exc:
        aside = set_aside(paths.config_hashes, now)
        found = StateRepaired(exc, aside, _rebuild_ledger(paths, executor, desired))
        log.error("%s", found)
        repaired.append(found)
    return repaired


def _rebuild_trust(paths: AgentPaths, config: AgentConfig | None) -> str:
    cached = read_cache(paths.desired_cache)  # checked just before: missing or whole
    if cached is not None:
        try:
            root = SignedRoot.model_validate_json(cached.root)
        except ValidationError:
            root = None
        if root is not None:
            held, how = _held_root(cached.trust, config)
            state = TrustState(
                last_serial=root.serial,
                last_bundle_sha256=hashlib.sha256(cached.bundle).hexdigest(),
                time_floor=root.issued_at,
                trust_version=None if held is None else held.version,
                trust_root=None if held is None else base64.b64encode(held.raw).decode("ascii"),
            )
            save_trust_state(paths.trust_file, state)
            return (
                f"rebuilt from {paths.desired_cache.name}: serial {root.serial}, "
                f"issued {root.issued_at.isoformat()}, {how}; verified again with gpg at the next poll"
            )
    serial, version = _reported(paths)
    save_trust_state(paths.trust_file, TrustState(last_serial=serial, trust_version=version))
    if serial is not None or version is not None:
        floor = "" if version is None else f", at least trust-root version {version}"
        return f"rebuilt from the last report: serial {serial}{floor} (no {paths.desired_cache.name})"
    return (
        f"rebuilt empty: no {paths.desired_cache.name} and no report says which serial was last "
        "accepted, so the next validly signed bundle is accepted at any serial, as on first boot"
    )


def _held_root(trust: bytes, config: AgentConfig | None) -> tuple[TrustedRoot | None, str]:
    """The newest trust-root version the cached ``trust.json`` reaches from the pinned root keys,
    verified again with gpg (the cache is only a file on disk: its bytes count once they verify)."""
    if config is None:
        return None, "no trust-root version (no agent config to verify it with)"
    if not trust:
        return None, "no trust-root version (the cached commit carries no trust.json)"
    try:
        chain = parse_trust_file(trust)
        with load_keyring(config, chain.keys) as keyring:
            held = verify_trust(chain, pin_of(config), None, keyring)
    except (InvalidContent, SetupError, ValueError, OSError) as exc:
        log.warning("trust state: the cached trust.json does not verify from the pin: %s", exc)
        return None, f"no trust-root version (the cached trust.json does not verify: {exc})"
    return held, f"trust-root version {held.version} (its chain verified again from the pinned root keys)"


def _reported(paths: AgentPaths) -> tuple[int | None, int | None]:
    """The newest bundle serial and trust-root version a report of this robot names (status.json,
    the outbox): floors only, never keys (the chain is walked from the pin and must reach it)."""
    reports = [r for r in (load_status(paths.status_file), Outbox(paths.outbox).pending()) if r is not None]
    serials = [r.bundle_serial for r in reports if r.bundle_serial is not None]
    versions = [r.trust_version for r in reports if r.trust_version is not None]
    return max(serials, default=None), max(versions, default=None)


def _rebuild_journal(journal: Journal, app: str, executor: Executor, now: datetime) -> str:
    try:
        active = executor.active(app)
    except Exception as exc:  # the engine does not answer: the machine asks it again next cycle
        journal.clear()
        return f"rebuilt empty: the active version is unknown ({exc})"
    if active is None:
        journal.clear()
        return "rebuilt empty: no version of the app is active on disk"
    entry = JournalEntry(
        deployment_id=RECOVERED_ID,
        version=active,
        previous_version=None,
        state=Activity.HEALTHY,
        attempts=0,
        updated_at=now,
        reason=f"journal rebuilt from the {executor.name} executor: {active} is active",
        committed=True,
    )
    journal.record(entry)  # sequence 1 again: the old numbers are in the file set aside
    return f"rebuilt from the {executor.name} executor: {active} is active"


def _rebuild_ledger(paths: AgentPaths, executor: Executor, desired: Desired) -> str:
    running: dict[str, tuple[Release, dict[str, Any] | None]] = {}
    for app, assignment in desired.assignments.items():
        try:
            active = executor.active(app)
        except Exception as exc:  # unknown: no entry; its next deployment writes one
            log.warning("%s: active version unknown, its config is not in the rebuilt ledger: %s", app, exc)
            continue
        if active == assignment.deployment.version:
            running[app] = (assignment.release, assignment.deployment.config)
    files = rebuild_ledger(paths, running)
    if not files:
        return "rebuilt empty: no running version's config is known from the verified desired state"
    return "rebuilt from the verified desired state: " + ", ".join(files)
