"""Shared pytest fixtures and helpers for the whole suite.

Sections: services (skip-or-fail for tests that need a real outside program). Add fixtures under a
section heading of their own; keep heavy builders (fleet repositories, simulators) in their own
modules under tests/ and expose only a thin fixture here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.gpgkeys import KeyFactory
    from tests.hookreceiver import HookReceiver
    from tests.httpserver import ArtifactServer
    from tests.sim.agent import AgentWorld

# --- services -------------------------------------------------------------------------------------
# A test that needs gpg, Docker, gitolite or Chromium skips when it is missing on a developer's box,
# but CI (dev/test with CI=true sets FLEETCD_REQUIRE_SERVICES=1) must never go green by skipping.

REQUIRE_SERVICES_ENV = "FLEETCD_REQUIRE_SERVICES"


def services_required() -> bool:
    """True when a missing service is a failure, not a skip (CI)."""
    return os.environ.get(REQUIRE_SERVICES_ENV) == "1"


def require_service(name: str, available: bool, why: str) -> None:
    """Skip the calling test when ``name`` is unavailable; fail instead when services are required."""
    if available:
        return
    message = f"{name} unavailable: {why}"
    if services_required():
        pytest.fail(f"{message} ({REQUIRE_SERVICES_ENV}=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def gpg_available() -> str:
    """Path of a working gpg binary; the requesting test skips (fails under CI) without one."""
    gpg = shutil.which("gpg")
    works = gpg is not None and subprocess.run([gpg, "--version"], capture_output=True).returncode == 0
    require_service("gpg", works, "no working `gpg` on PATH (Debian package gnupg; run dev/bootstrap)")
    assert gpg is not None
    return gpg


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of Prometheus' promtool; the requesting test skips (fails under CI) without one."""
    found = shutil.which("promtool")
    works = found is not None and subprocess.run([found, "--version"], capture_output=True).returncode == 0
    require_service("promtool", works, "no `promtool` on PATH (Debian package prometheus; run dev/bootstrap)")
    assert found is not None
    return found


# --- shared worlds -----------------------------------------------------------------------------------
# The suite's OpenPGP keys are generated once per session (real gpg, tests/gpgkeys.py); a module that
# needs other keys defines its own ``keys`` fixture, which wins over this one.


@pytest.fixture(scope="session")
def keys(gpg_available: str) -> KeyFactory:
    from tests.gpgkeys import shared_keys

    return shared_keys()


@pytest.fixture
def artifacts() -> Iterator[ArtifactServer]:
    """A real local HTTP server for release artifacts (tests/httpserver.py)."""
    from tests.httpserver import ArtifactServer

    with ArtifactServer() as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    """A real local HTTP server receiving webhooks or commit statuses (tests/hookreceiver.py)."""
    from tests.hookreceiver import HookReceiver

    server = HookReceiver()
    yield server
    server.close()


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    """One robot's agent against a fleet repository the real controller writes (tests/sim/agent.py)."""
    from tests.sim.agent import AgentWorld

    built = AgentWorld.create(tmp_path, keys, artifacts)
    yield built
    built.close()
