"""The robot's cache of its last accepted desired state (``desired.json``) edited or replayed on disk,
with the git server out of reach so that the cache is all the robot has.

The cache only saves gpg work: its bytes are re-parsed without gpg only while they are exactly the
bytes accepted before (the trust state's bundle digest); anything else is verified in full, and a
bundle below the serial the robot holds is a rollback. So an edited cache (a person, malware, a
backup restored over it) must never change what runs: the robot keeps its version, says why, and
is back to normal as soon as the server answers. Real agent cycles (tests/sim/agent.py): the real
controller's signed bundles, real gpg, tarball apps over HTTP.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import CorruptState
from agent.sync.accept import read_cache, write_cache
from agent.trustcheck import load_trust_state
from fleetcd.desired import BundleRejected
from fleetcd.errors import InvalidContent
from fleetcd.vocabulary import Activity
from fleetcd.wire import DesiredFiles
from tests.gpgkeys import KeyFactory
from tests.httpserver import ArtifactServer
from tests.sim.agent import APP, AgentWorld


@pytest.fixture
def world(tmp_path: Path, keys: KeyFactory, artifacts: ArtifactServer) -> Iterator[AgentWorld]:
    built = AgentWorld.create(tmp_path, keys, artifacts)
    built.publish("1.0.0")
    first = built.once()
    assert first.error is None, first.errors
    built.reconcile()
    yield built
    built.close()


def edit_cached_bundle(world: AgentWorld, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` inside the cached bundle, keeping the cache well-formed."""
    path = world.paths.desired_cache
    cached = json.loads(path.read_bytes())
    bundle = base64.b64decode(cached["bundle"])
    assert old in bundle
    cached["bundle"] = base64.b64encode(bundle.replace(old, new)).decode("ascii")
    path.write_text(json.dumps(cached))


def refused(errors: list[Exception]) -> list[Exception]:
    return [e for e in errors if isinstance(e, (BundleRejected, InvalidContent))]


def test_an_edited_cache_with_the_server_down_changes_nothing_and_is_refused(world: AgentWorld) -> None:
    edit_cached_bundle(world, b'"1.0.0"', b'"9.9.9"')
    trust_before = load_trust_state(world.paths.trust_file)

    with world.controller.server_down():
        world.controller.clock.tick(30)
        result = world.once()

    assert refused(result.errors), result.errors  # verified in full, and it does not verify
    assert not result.stale and result.report is not None
    entry = world.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.0.0", Activity.HEALTHY)
    assert world.answer() == "1.0.0"
    assert not (world.paths.apps_dir / APP / "releases" / "9.9.9").exists()
    trust_after = load_trust_state(world.paths.trust_file)
    assert trust_after.last_serial == trust_before.last_serial  # nothing accepted from the edit
    assert trust_after.last_bundle_sha256 == trust_before.last_bundle_sha256


def test_an_edited_cache_is_replaced_by_the_servers_bytes_as_soon_as_it_answers(world: AgentWorld) -> None:
    edit_cached_bundle(world, b'"1.0.0"', b'"9.9.9"')
    world.controller.clock.tick(30)

    result = world.once()

    assert result.error is None, result.errors  # the server's commit verifies; the edit is never read
    cached = base64.b64decode(json.loads(world.paths.desired_cache.read_bytes())["bundle"])
    assert b'"9.9.9"' not in cached
    assert world.answer() == "1.0.0"


def test_an_older_cache_restored_from_a_backup_cannot_roll_the_robot_back(world: AgentWorld) -> None:
    older = world.paths.desired_cache.read_bytes()  # the signed bundle that deployed 1.0.0
    world.publish("1.1.0")
    assert world.once().error is None
    world.reconcile()
    world.paths.desired_cache.write_bytes(older)  # a backup of the state directory put back

    with world.controller.server_down():
        world.controller.clock.tick(30)
        result = world.once()

    assert refused(result.errors), result.errors  # validly signed, but below the serial held
    entry = world.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.1.0", Activity.HEALTHY)
    assert world.answer() == "1.1.0"
    assert load_trust_state(world.paths.trust_file).last_serial == result.serial


def test_a_cache_naming_another_commit_than_its_bytes_is_verified_in_full_not_trusted(
    world: AgentWorld,
) -> None:
    path = world.paths.desired_cache
    cached = json.loads(path.read_bytes())
    cached["commit"] = "0" * 40  # the bytes are the accepted ones, only the name differs
    path.write_text(json.dumps(cached))

    with world.controller.server_down():
        world.controller.clock.tick(30)
        result = world.once()

    # Either way the robot runs what it ran, and never something the bytes do not say.
    entry = world.entry()
    assert entry is not None and (entry.version, entry.state) == ("1.0.0", Activity.HEALTHY)
    assert world.answer() == "1.0.0"
    assert result.report is not None


# --- the cache file itself -----------------------------------------------------------------------------

FILES = DesiredFiles(
    commit="c" * 40,
    bundle=b'{"serial": 3}',
    root=b'{"root": 1}',
    root_signature=b"-----BEGIN PGP SIGNATURE-----\n",
    proof=b"{}",
    trust=b'{"versions": []}',
)


def test_the_cache_keeps_every_file_byte_for_byte_and_privately(tmp_path: Path) -> None:
    path = tmp_path / "desired.json"

    write_cache(path, FILES)

    assert read_cache(path) == FILES
    assert path.stat().st_mode & 0o777 == 0o600  # it names versions and URLs: root's business only


def test_a_cache_written_before_trust_json_existed_still_reads_with_no_trust(tmp_path: Path) -> None:
    path = tmp_path / "desired.json"
    write_cache(path, FILES)
    old = json.loads(path.read_bytes())
    del old["trust"]
    path.write_text(json.dumps(old))

    cached = read_cache(path)

    assert cached is not None and cached.trust == b"" and cached.bundle == FILES.bundle


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        pytest.param(
            lambda d: d.update(bundle="%%%not base64%%%"), "not a desired-state cache", id="bad-base64"
        ),
        pytest.param(lambda d: d.pop("root"), "root", id="missing-file"),
        pytest.param(lambda d: d.update(extra="x"), "extra", id="unknown-field"),
        pytest.param(lambda d: d.update(commit=7), "commit", id="commit-not-text"),
    ],
)
def test_a_cache_that_does_not_parse_is_corrupt_state_naming_the_file(
    tmp_path: Path, edit: Callable[[dict[str, Any]], object], why: str
) -> None:
    path = tmp_path / "desired.json"
    write_cache(path, FILES)
    document = json.loads(path.read_bytes())
    edit(document)
    path.write_text(json.dumps(document))

    with pytest.raises(CorruptState) as caught:
        read_cache(path)

    assert str(path) in str(caught.value) and why in str(caught.value)


def test_no_cache_yet_is_none_not_an_error(tmp_path: Path) -> None:
    assert read_cache(tmp_path / "desired.json") is None
