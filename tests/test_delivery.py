"""Per-robot desired state written the way the controller does, and read back the way a robot does.

A real fleet repository (FleetRepoBuilder with a signed release and real approvals), real gpg, a
real bare git repository, and ``fleetcd.desired.verify_bundle`` as the robot's judge. The
namespace test asks the real ``git upload-pack`` what a robot served with ``GIT_NAMESPACE`` sees.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from controller.delivery import (
    BundleInputs,
    DeliveryResult,
    DeliverySource,
    bundle_for,
    content_digest,
    delivery_ref,
    read_targets,
    write_desired_state,
)
from controller.delivery.bundles import Evidence, EvidenceKey
from controller.delivery.inputs import recipe
from controller.records.model import Action, DeploymentRecord, TargetStatus
from controller.records.transitions import new_deployment
from fleetcd.compat import UTC
from fleetcd.desired import (
    BUNDLE_FILE,
    PROOF_FILE,
    ROOT_FILE,
    ROOT_SIGNATURE_FILE,
    Bundle,
    TrustAnchors,
    verify_bundle,
)
from fleetcd.desired.chain import trust_file_of
from fleetcd.desired.configset import ConfigSet, merged_sha256
from fleetcd.errors import InvalidContent
from fleetcd.git.objects import read_blob, ref_target
from fleetcd.git.repo import Repository, open_or_init_bare
from fleetcd.loading.fleetspec import FleetSpec
from fleetcd.models import Stage, TrustRoot
from fleetcd.reasons import Reason
from fleetcd.trust.gpg import Keyring
from tests.fleetrepo import FleetRepoBuilder
from tests.gpgkeys import KeyFactory

ROBOTS = [f"amr-{n:03d}" for n in range(1, 51)]
CANARY = ROBOTS[:5]
ISSUED = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
EXPIRES = ISSUED + timedelta(days=7)
NOW = ISSUED + timedelta(minutes=5)
SCHEMA = {
    "type": "object",
    "properties": {"max_speed": {"type": "number", "maximum": 2.0}},
    "additionalProperties": False,
}


@dataclass
class Fleet:
    spec: FleetSpec
    old_spec: FleetSpec  # the same fleet when the rollout still named nav 1.0.0
    keys: KeyFactory
    sign_calls: list[bytes] = field(default_factory=list)

    def sign(self, data: bytes) -> bytes:
        self.sign_calls.append(data)
        return self.keys.sign(data, self.keys.key("controller"))

    def trust(self) -> TrustRoot:
        assert self.spec.trust_root is not None
        return self.spec.trust_root

    def sha(self, version: str) -> str:
        return hashlib.sha256(self.spec.files[f"releases/nav/{version}.yaml"]).hexdigest()


def _spec(builder: FleetRepoBuilder) -> FleetSpec:
    builder.write()
    result = builder.validate()
    assert result.ok, [str(d) for d in result.diagnostics]
    assert result.spec is not None
    return result.spec


@pytest.fixture(scope="module")
def fleet(keys: KeyFactory, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    root = tmp_path_factory.mktemp("fleet")
    builder = FleetRepoBuilder(root / "repo", keys=keys)
    for robot in ROBOTS:
        builder.device(robot)
    builder.cohort("canary", CANARY, stage="canary")
    builder.cohort("production", ROBOTS[5:], stage="production")
    builder.release("nav", "1.0.0", config_schema=SCHEMA)
    builder.release("nav", "1.1.0", config_schema=SCHEMA)
    builder.config("nav", "default", {"max_speed": 1.5})
    builder.config("nav", "device-amr-002", {"max_speed": 0.5})
    builder.rollout("nav", app="nav", release="1.0.0", cohorts=["canary", "production"])
    old_spec = _spec(builder)
    builder.rollout("nav", app="nav", release="1.1.0", cohorts=["canary", "production"])
    spec = _spec(builder)
    return Fleet(spec, old_spec, keys)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return open_or_init_bare(tmp_path / "fleet.git")


@pytest.fixture(scope="module")
def keyring(fleet: Fleet) -> Iterator[Keyring]:
    names = ["controller", "release-bot", "alice", "bob"]
    ring = fleet.keys.keyring([fleet.keys.key(n) for n in names])
    yield ring
    ring.close()


DEFAULT_CONFIG = "configs/nav/default.yaml"
COMMIT = "c" * 40  # a record that names its evidence commit knows its config files


def record(fleet: Fleet, robot: str, version: str = "1.1.0", **overrides: object) -> DeploymentRecord:
    made = new_deployment(
        rollout="nav",
        generation=2,
        device=robot,
        app="nav",
        version=version,
        release_sha256=fleet.sha(version),
        wave=0,
        action=Action.DEPLOY,
        target_status=TargetStatus.DEPLOYED,
        at=ISSUED,
        deadline_at=None,
    )
    return made.model_copy(update=overrides) if overrides else made


def all_bundles(fleet: Fleet, serial: int) -> dict[str, Bundle]:
    source = DeliverySource(fleet.spec)
    return {r: bundle_for(r, [record(fleet, r)], source, serial, ISSUED, EXPIRES) for r in ROBOTS}


def write(
    repo: Repository,
    fleet: Fleet,
    serial: int,
    bundles: Mapping[str, Bundle] | None = None,
    *,
    namespaces: bool = False,
) -> DeliveryResult:
    return write_desired_state(
        repo,
        all_bundles(fleet, serial) if bundles is None else bundles,
        fleet="demo",
        serial=serial,
        issued_at=ISSUED,
        expires_at=EXPIRES,
        sign=fleet.sign,
        namespaces=namespaces,
        trust=trust_file_of(fleet.spec),
    )


def robot_reads(repo: Repository, ref: str) -> tuple[bytes, bytes, bytes, bytes]:
    files = [read_blob(repo, ref, name) for name in (BUNDLE_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE, PROOF_FILE)]
    assert all(f is not None for f in files), ref
    bundle, root, signature, proof = (f or b"" for f in files)
    return bundle, root, signature, proof


def test_fifty_robots_share_one_signature_and_each_verifies_against_real_gpg(
    fleet: Fleet, repo: Repository, keyring: Keyring
) -> None:
    fleet.sign_calls.clear()
    result = write(repo, fleet, 3)
    assert len(fleet.sign_calls) == 1 and result.signatures == 1
    assert len(result.refs) == len(ROBOTS) == len(set(result.refs.values()))
    assert fleet.spec.fleet is not None
    anchors = TrustAnchors.from_trust_root(fleet.trust())
    for robot in ROBOTS:
        ref = delivery_ref(robot, namespaces=False)
        assert ref == f"refs/fleetcd/desired/{robot}" and ref_target(repo, ref) == result.refs[ref]
        verified = verify_bundle(robot, *robot_reads(repo, ref), anchors, 2, NOW, keyring)
        (deployment,) = verified.bundle.deployments
        assert (deployment.version, deployment.action, verified.root.serial) == ("1.1.0", "deploy", 3)
        assert deployment.stage.value == "production" and deployment.approvals_required == 2
        assert deployment.config == {"max_speed": 0.5 if robot == "amr-002" else 1.5}


def test_one_robots_new_bundle_moves_its_ref_alone_under_one_signature(
    fleet: Fleet, repo: Repository, keyring: Keyring
) -> None:
    """The root covers the moving robots' bundles only: the other 49 refs keep their commits, and
    every robot still verifies what it holds (the moved one at the new serial, above the old)."""
    first = write(repo, fleet, 4)
    fleet.sign_calls.clear()
    source = DeliverySource(fleet.spec)
    rolled_back = record(fleet, "amr-003", "1.0.0", action=Action.ROLLBACK)
    then = DeliverySource(fleet.old_spec).evidence("nav")
    bundle = bundle_for(
        "amr-003",
        [rolled_back],
        source,
        5,
        ISSUED,
        EXPIRES,
        evidence={("nav", rolled_back.release_sha256): then},
    )
    moved = write(repo, fleet, 5, {"amr-003": bundle})
    ref = delivery_ref("amr-003", namespaces=False)
    assert (len(fleet.sign_calls), moved.moved, set(moved.commits)) == (1, frozenset({ref}), {"amr-003"})
    targets = read_targets(repo, ROBOTS, namespaces=False)
    assert {d for d in ROBOTS if targets[d] != first.commits[d]} == {"amr-003"}
    anchors = TrustAnchors.from_trust_root(fleet.trust())
    verified = verify_bundle("amr-003", *robot_reads(repo, ref), anchors, 4, NOW, keyring)
    assert (verified.root.serial, verified.root.leaves) == (5, 1)
    kept = verify_bundle(
        "amr-004", *robot_reads(repo, delivery_ref("amr-004", namespaces=False)), anchors, 4, NOW, keyring
    )
    assert (kept.root.serial, kept.unchanged) == (4, True)


def test_a_robot_served_with_its_git_namespace_is_advertised_only_its_own_ref(
    fleet: Fleet, repo: Repository
) -> None:
    write(repo, fleet, 6, namespaces=True)

    def advertised(namespace: str | None) -> list[str]:
        env = {k: v for k, v in os.environ.items() if k != "GIT_NAMESPACE"}
        if namespace is not None:
            env["GIT_NAMESPACE"] = namespace
        out = subprocess.run(
            ["git", "upload-pack", "--advertise-refs", repo.path], env=env, capture_output=True, check=True
        ).stdout
        return [line.split(b" ", 1)[1].split(b"\0")[0].decode() for line in _pkt_lines(out) if b" " in line]

    assert advertised("amr-007") == ["refs/fleetcd/desired/amr-007"]
    assert len(advertised(None)) == len(ROBOTS)  # unfiltered, the server would show everyone's


def _pkt_lines(data: bytes) -> Iterator[bytes]:
    while data:
        size = int(data[:4], 16)
        if size == 0:
            data = data[4:]
            continue
        yield data[4:size].rstrip(b"\n")
        data = data[size:]


def test_rollback_carries_the_evidence_that_approved_the_previous_release(
    fleet: Fleet, repo: Repository, keyring: Keyring
) -> None:
    back = record(fleet, "amr-001", "1.0.0", action=Action.ROLLBACK)
    with pytest.raises(InvalidContent) as stalled:
        bundle_for("amr-001", [back], fleet.spec, 7, ISSUED, EXPIRES)
    assert stalled.value.diagnostics[0].reason is Reason.ROLLOUT_MISMATCH
    assert stalled.value.diagnostics[0].file == "rollouts/nav.yaml"

    then = DeliverySource(fleet.old_spec).evidence("nav")
    bundle = bundle_for(
        "amr-001", [back], fleet.spec, 7, ISSUED, EXPIRES, evidence={("nav", back.release_sha256): then}
    )
    write(repo, fleet, 7, {"amr-001": bundle})
    assert fleet.spec.fleet is not None
    anchors = TrustAnchors.from_trust_root(fleet.trust())
    verified = verify_bundle(
        "amr-001", *robot_reads(repo, delivery_ref("amr-001", namespaces=False)), anchors, None, NOW, keyring
    )
    assert [(d.action, d.version) for d in verified.bundle.deployments] == [("rollback", "1.0.0")]


def test_release_bytes_that_differ_from_the_record_stall_instead_of_shipping(fleet: Fleet) -> None:
    tampered = record(fleet, "amr-003", release_sha256="0" * 64)
    with pytest.raises(InvalidContent) as stalled:
        bundle_for("amr-003", [tampered], fleet.spec, 8, ISSUED, EXPIRES)
    assert stalled.value.diagnostics[0].reason is Reason.RELEASE_MODIFIED
    assert stalled.value.diagnostics[0].file == "releases/nav/1.1.0.yaml"


def test_config_bytes_that_differ_from_the_record_stall_instead_of_shipping(fleet: Fleet) -> None:
    """A deployment id stands for one config: a snapshot whose layers merge to other values (an
    edited file under an old record) stalls instead of shipping new bytes under the old id."""
    edited = record(
        fleet,
        "amr-003",
        config_sha256=merged_sha256({"max_speed": 0.1}),
        config_files=(DEFAULT_CONFIG,),
        commit=COMMIT,
    )
    with pytest.raises(InvalidContent) as stalled:
        bundle_for("amr-003", [edited], fleet.spec, 8, ISSUED, EXPIRES)
    assert stalled.value.diagnostics[0].reason is Reason.CONFIG_MISMATCH
    assert edited.id in stalled.value.diagnostics[0].message


def test_a_record_ships_exactly_its_own_config_layers(fleet: Fleet) -> None:
    """The layers come from the record, not from today's membership: amr-002 keeps its two."""
    layers = (DEFAULT_CONFIG, "configs/nav/device-amr-002.yaml")
    own = record(
        fleet, "amr-002", config_sha256=merged_sha256({"max_speed": 0.5}), config_files=layers, commit=COMMIT
    )
    (deployment,) = bundle_for("amr-002", [own], fleet.spec, 8, ISSUED, EXPIRES).deployments
    assert [f.path for f in deployment.config_files] == list(layers)
    assert deployment.config == {"max_speed": 0.5}
    only_default = record(
        fleet,
        "amr-002",
        config_sha256=merged_sha256({"max_speed": 1.5}),
        config_files=layers[:1],
        commit=COMMIT,
    )
    (older,) = bundle_for("amr-002", [only_default], fleet.spec, 8, ISSUED, EXPIRES).deployments
    assert [f.path for f in older.config_files] == [DEFAULT_CONFIG] and older.config == {"max_speed": 1.5}


def test_a_record_made_without_config_ships_none_although_layers_apply_now(fleet: Fleet) -> None:
    """Its deployment had no config; the robot's new layers are the next deployment's, not this one's."""
    bare = record(fleet, "amr-001", commit=COMMIT)
    (deployment,) = bundle_for("amr-001", [bare], fleet.spec, 8, ISSUED, EXPIRES).deployments
    assert (deployment.config, deployment.config_files) == (None, [])


def test_newest_record_per_app_wins_and_archived_ones_are_dropped(fleet: Fleet) -> None:
    old = record(fleet, "amr-004", "1.0.0").model_copy(update={"created_at": ISSUED - timedelta(days=1)})
    archived = record(fleet, "amr-004", "1.1.0", target_status=TargetStatus.ARCHIVED)
    staged = record(fleet, "amr-004", target_status=TargetStatus.STAGED)
    source = DeliverySource(fleet.spec)
    assert bundle_for("amr-004", [archived], source, 9, ISSUED, EXPIRES).deployments == []
    (only,) = bundle_for("amr-004", [old, staged], source, 9, ISSUED, EXPIRES).deployments
    assert (only.deployment_id, only.action, only.config) == (staged.id, "stage", {"max_speed": 1.5})


def test_the_content_digest_ignores_serial_and_timestamps_but_not_deployments(fleet: Fleet) -> None:
    source = DeliverySource(fleet.spec)
    now = bundle_for("amr-009", [record(fleet, "amr-009")], source, 10, ISSUED, EXPIRES)
    later = bundle_for("amr-009", [record(fleet, "amr-009")], source, 11, NOW, EXPIRES + timedelta(days=1))
    nothing = bundle_for("amr-009", [], source, 10, ISSUED, EXPIRES)
    assert content_digest(now) == content_digest(later) != content_digest(nothing)


# --- inputs digest: what a bundle is built from (controller.delivery.inputs) ----------------------------


def _evidence(fleet: Fleet, **changes: object) -> Evidence:
    return dataclasses.replace(DeliverySource(fleet.spec).evidence("nav"), **changes)  # type: ignore[arg-type]


# Each case changes one input of amr-002's bundle; the bundle it builds must differ, and so must
# its inputs digest (else the robot would keep the old bundle without its being built again).
INPUT_CHANGES: dict[
    str, Callable[[Fleet], tuple[str, list[DeploymentRecord], dict[EvidenceKey, Evidence]]]
] = {
    "another device": lambda f: ("amr-003", [record(f, "amr-003")], {}),
    "another release": lambda f: (
        "amr-002",
        [record(f, "amr-002", "1.0.0")],
        {("nav", f.sha("1.0.0")): DeliverySource(f.old_spec).evidence("nav")},
    ),
    "staged, not deployed": lambda f: (
        "amr-002",
        [record(f, "amr-002", target_status=TargetStatus.STAGED)],
        {},
    ),
    "a rollback": lambda f: (
        "amr-002",
        [record(f, "amr-002", "1.0.0", action=Action.ROLLBACK)],
        {("nav", f.sha("1.0.0")): DeliverySource(f.old_spec).evidence("nav")},
    ),
    "another generation": lambda f: ("amr-002", [record(f, "amr-002", generation=3)], {}),
    "config layers": lambda f: (
        "amr-002",
        [
            record(
                f,
                "amr-002",
                config_sha256=merged_sha256({"max_speed": 1.5}),
                config_files=(DEFAULT_CONFIG,),
                commit=COMMIT,
            )
        ],
        {},
    ),
    "no deployment": lambda f: ("amr-002", [], {}),
    "rollout bytes": lambda f: (
        "amr-002",
        [record(f, "amr-002")],
        {"x": _evidence(f, rollout_raw=b"kind: Rollout\n")},
    ),
    "approvals": lambda f: ("amr-002", [record(f, "amr-002")], {"x": _evidence(f, approvals={})}),
    "release signatures": lambda f: (
        "amr-002",
        [record(f, "amr-002")],
        {"x": _evidence(f, release_signatures={})},
    ),
    "stage": lambda f: ("amr-002", [record(f, "amr-002")], {"x": _evidence(f, stage=Stage.CANARY)}),
    "approvals required": lambda f: (
        "amr-002",
        [record(f, "amr-002")],
        {"x": _evidence(f, approvals_required=3)},
    ),
    "not before": lambda f: ("amr-002", [record(f, "amr-002")], {"x": _evidence(f, not_before=ISSUED)}),
    "config set": lambda f: (
        "amr-002",
        [record(f, "amr-002")],
        {
            "x": _evidence(
                f, configs=ConfigSet({**f.spec.config_set("nav").files, "configs/nav/canary.yaml": b"{}"})
            )
        },
    ),
    "config values": lambda f: (
        "amr-002",
        [record(f, "amr-002")],
        {
            "x": _evidence(
                f, config_values={DEFAULT_CONFIG: {"max_speed": 1.0}, "configs/nav/device-amr-002.yaml": {}}
            )
        },
    ),
}


def _with_record_key(
    records: list[DeploymentRecord], evidence: dict[EvidenceKey, Evidence]
) -> dict[EvidenceKey, Evidence]:
    """The changed evidence ("x") keyed by the id of the one record it backs."""
    if "x" not in evidence:
        return evidence
    return {records[0].id: evidence["x"]}


@pytest.mark.parametrize("change", sorted(INPUT_CHANGES), ids=sorted(INPUT_CHANGES))
def test_every_input_that_changes_a_bundle_changes_its_inputs_digest(fleet: Fleet, change: str) -> None:
    source = DeliverySource(fleet.spec)
    base = [record(fleet, "amr-002")]
    base_inputs = BundleInputs(source, {}).digest("amr-002", base)
    base_content = content_digest(bundle_for("amr-002", base, source, 5, ISSUED, EXPIRES))

    device, records, raw = INPUT_CHANGES[change](fleet)
    evidence = _with_record_key(records, raw)
    content = content_digest(bundle_for(device, records, source, 5, ISSUED, EXPIRES, evidence=evidence))
    assert content != base_content
    assert BundleInputs(source, evidence).digest(device, records) != base_inputs


def test_the_inputs_digest_is_the_same_from_another_reconciles_source(fleet: Fleet) -> None:
    """Nothing of one process or reconcile leaks in (object ids, dict order): a controller
    restarted on another host finds the digests it recorded. A record the bundle does not carry
    (archived) moves nothing."""
    records = [record(fleet, "amr-002")]
    archived = record(fleet, "amr-002", "1.0.0", target_status=TargetStatus.ARCHIVED)
    first = BundleInputs(DeliverySource(fleet.spec), {})
    again = BundleInputs(DeliverySource(fleet.spec, {"nav": fleet.sha("1.1.0")}), {})
    assert first.digest("amr-002", records) == again.digest("amr-002", [archived, *records])


def test_fifty_robots_of_one_rollout_fingerprint_its_evidence_once(fleet: Fleet) -> None:
    inputs = BundleInputs(DeliverySource(fleet.spec), {})
    digests = {robot: inputs.digest(robot, [record(fleet, robot)]) for robot in ROBOTS}
    assert inputs.fingerprinted == 1 and len(set(digests.values())) == len(ROBOTS)


def test_the_inputs_digest_stalls_where_building_would(fleet: Fleet) -> None:
    """Evidence that does not back a record is refused before anything is skipped."""
    tampered = record(fleet, "amr-003", release_sha256="0" * 64)
    with pytest.raises(InvalidContent) as stalled:
        BundleInputs(DeliverySource(fleet.spec), {}).digest("amr-003", [tampered])
    assert stalled.value.diagnostics[0].reason is Reason.RELEASE_MODIFIED


def test_the_recipe_is_the_same_in_another_process() -> None:
    """The bundle model's schema is part of every inputs digest: it must not depend on the
    process (hash seeds, import order), or a restarted controller would build every bundle again."""
    script = "from controller.delivery.inputs import recipe; print(recipe())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )

    assert other.stdout.strip() == recipe()
