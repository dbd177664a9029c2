"""A robot's desired-state trust chain under attack, with real gpg keys and one signed root.

Every test publishes bundles the way the controller does (``build_signed_bundles``, one signature)
and verifies them the way the agent does (``verify_bundle`` against pinned anchors and a real
keyring). Scenarios are named after the attack they stop: a compromised git host (tampering,
swapping bundles between robots, replaying old serials, freezing updates) and a compromised
controller (unsigned releases, missing approvals, config outside the release's schema).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from fleetcd.desired import (
    BundleConfigFile,
    BundleDeployment,
    BundleExpired,
    BundleRejected,
    TrustAnchors,
    build_signed_bundles,
    canonical_bytes,
)
from fleetcd.desired.configset import ConfigSet
from fleetcd.errors import SetupError
from fleetcd.models import Stage
from fleetcd.reasons import Reason
from tests.desiredworld import (
    CONFIGS,
    DEFAULT_CONFIG,
    EPOCH,
    EXPIRES,
    FLEET,
    ISSUED,
    RELEASE,
    RELEASE_PATH,
    ROLLOUT_NAME,
    ROLLOUT_PAUSED,
    ROLLOUT_WIDENED,
    SERIAL,
    Delivery,
    World,
    b64,
    bundle,
    config_file,
    sign_leaves,
    signed_bundle,
    signed_root,
)
from tests.desiredworld import delivered as delivered  # module fixtures
from tests.desiredworld import world as world


def test_valid_bundle_verifies(world: World, delivered: dict[str, Delivery]) -> None:
    verified = world.verify(delivered["robot-a"])
    assert verified.bundle.device == "robot-a"
    assert verified.root.serial == SERIAL
    assert verified.bundle_sha256 == hashlib.sha256(delivered["robot-a"].bundle).hexdigest()
    assert not verified.unchanged
    assert not verified.clock_suspect
    assert verified.releases["d-0001"].version == "1.2.0"


# --- a compromised git host: everything it can do with controller-signed bytes ---------------------


def _flip_byte(d: dict[str, Delivery]) -> dict[str, Any]:
    tampered = d["robot-a"].bundle.replace(b'"max_speed":1.5', b'"max_speed":1.9')
    return {"delivery": replace(d["robot-a"], bundle=tampered)}


def _other_robots_bundle(d: dict[str, Delivery]) -> dict[str, Any]:
    return {"delivery": d["robot-b"], "device": "robot-a"}


def _other_robots_proof(d: dict[str, Delivery]) -> dict[str, Any]:
    return {"delivery": replace(d["robot-a"], proof=d["robot-b"].proof)}


def _edit_root(d: dict[str, Delivery]) -> dict[str, Any]:
    later = d["robot-a"].root.replace(EXPIRES.isoformat().encode()[:4], b"2099")
    return {"delivery": replace(d["robot-a"], root=later)}


def _older_serial(d: dict[str, Delivery]) -> dict[str, Any]:
    return {"delivery": d["robot-a"], "last_serial": SERIAL + 1}


def _same_serial_other_bytes(d: dict[str, Delivery]) -> dict[str, Any]:
    return {"delivery": d["robot-a"], "last_serial": SERIAL, "last_bundle_sha256": "0" * 64}


def _huge_bundle(d: dict[str, Delivery]) -> dict[str, Any]:
    return {"delivery": replace(d["robot-a"], bundle=d["robot-a"].bundle + b" " * (4 * 1024 * 1024))}


def _huge_proof(d: dict[str, Delivery]) -> dict[str, Any]:
    return {"delivery": replace(d["robot-a"], proof=b"[" * (17 * 1024))}


HOST_ATTACKS: dict[str, tuple[Callable[[dict[str, Delivery]], dict[str, Any]], Reason]] = {
    "tampered-bundle-byte": (_flip_byte, Reason.NOT_INCLUDED),
    "another-robots-bundle": (_other_robots_bundle, Reason.NOT_INCLUDED),
    "another-robots-proof": (_other_robots_proof, Reason.NOT_INCLUDED),
    "edited-root-expiry": (_edit_root, Reason.ROOT_SIGNATURE_INVALID),
    "older-serial-rollback": (_older_serial, Reason.SERIAL_ROLLBACK),
    "same-serial-other-bytes": (_same_serial_other_bytes, Reason.SERIAL_REUSED),
    "oversized-bundle": (_huge_bundle, Reason.TOO_LARGE),
    "oversized-proof": (_huge_proof, Reason.TOO_LARGE),
}


@pytest.mark.parametrize(("attack", "reason"), HOST_ATTACKS.values(), ids=HOST_ATTACKS.keys())
def test_git_host_attack_is_rejected(
    world: World,
    delivered: dict[str, Delivery],
    attack: Callable[[dict[str, Delivery]], dict[str, Any]],
    reason: Reason,
) -> None:
    kwargs = attack(delivered)
    error = world.rejected(kwargs.pop("delivery"), **kwargs)
    assert error.reason is reason
    assert error.diagnostics[0].reason is reason
    assert error.diagnostics[0].message


def test_same_serial_same_bytes_is_unchanged_not_an_error(
    world: World, delivered: dict[str, Delivery]
) -> None:
    digest = hashlib.sha256(delivered["robot-a"].bundle).hexdigest()
    verified = world.verify(delivered["robot-a"], last_serial=SERIAL, last_bundle_sha256=digest)
    assert verified.unchanged


def test_newer_serial_is_accepted(world: World, delivered: dict[str, Delivery]) -> None:
    assert not world.verify(delivered["robot-a"], last_serial=SERIAL - 1).unchanged


def test_expired_bundle_is_rejected_as_expired(world: World, delivered: dict[str, Delivery]) -> None:
    """Freeze attack: the host keeps serving the last signed state after it expired."""
    with pytest.raises(BundleExpired) as caught:
        world.verify(delivered["robot-a"], now=EXPIRES + timedelta(seconds=1))
    assert caught.value.reason is Reason.EXPIRED
    assert caught.value.expires_at == EXPIRES
    assert isinstance(caught.value, BundleRejected)


def test_clock_reset_to_1970_does_not_make_an_expired_bundle_fresh(
    world: World, delivered: dict[str, Delivery]
) -> None:
    with pytest.raises(BundleExpired) as caught:
        world.verify(delivered["robot-a"], now=EPOCH, time_floor=EXPIRES + timedelta(days=1))
    assert caught.value.judged_at == EXPIRES + timedelta(days=1)


def test_clock_reset_to_1970_still_accepts_a_fresh_bundle(
    world: World, delivered: dict[str, Delivery]
) -> None:
    """A robot whose RTC died must not be bricked; it is only flagged for the report."""
    verified = world.verify(delivered["robot-a"], now=EPOCH)
    assert verified.clock_suspect


# --- the root: who signed it, for which fleet, and what it binds ------------------------------------


def test_root_signed_by_untrusted_key_is_rejected(world: World) -> None:
    forged = world.publish(signer="intruder")
    error = world.rejected(forged["robot-a"])
    assert error.reason is Reason.ROOT_SIGNATURE_INVALID
    assert world.keys["intruder"].fingerprint in str(error)


def test_root_of_another_fleet_is_rejected(world: World) -> None:
    error = world.rejected(world.publish(fleet="other-fleet")["robot-a"])
    assert error.reason is Reason.WRONG_FLEET


def test_bundle_naming_another_device_is_rejected_even_when_included(world: World) -> None:
    signed = sign_leaves(world, {"robot-a": bundle("robot-b", SERIAL, [world.deployment()])})
    assert world.rejected(signed["robot-a"]).reason is Reason.WRONG_DEVICE


def test_bundle_of_another_serial_is_rejected_even_when_included(world: World) -> None:
    signed = sign_leaves(world, {"robot-a": bundle("robot-a", SERIAL - 1, [world.deployment()])})
    assert world.rejected(signed["robot-a"]).reason is Reason.SERIAL_MISMATCH


# --- numbers out of range, even under a valid controller signature ---------------------------------
# Every number the robot parses is bounded: strict ints (no floats, no bools), serials and counts
# within 1..2**53, config integers within 64 bits; 4,300+ digits (Python's int-from-text limit) are
# a clean rejection naming the file, never a traceback.

HUGE = str(10**30)
DIGITS_4300 = "9" * 4300
DIGITS_4301 = "1" + "0" * 4300


def _swap(data: bytes, old: str, new: str) -> bytes:
    assert data.count(old.encode()) == 1, old
    return data.replace(old.encode(), new.encode())


def _root_field(name: str, value: str) -> Callable[[World], Delivery]:
    def make(world: World) -> Delivery:
        good = world.publish()["robot-a"].root
        current = {"serial": SERIAL, "leaves": 2}[name]
        return signed_root(world, _swap(good, f'"{name}":{current}', f'"{name}":{value}'))

    return make


def _proof_field(name: str, value: str) -> Callable[[World], Delivery]:
    def make(world: World) -> Delivery:
        good = world.publish()["robot-a"]
        current = {"leaf_index": 0, "leaves": 2}[name]
        return replace(good, proof=_swap(good.proof, f'"{name}":{current}', f'"{name}":{value}'))

    return make


def _bundle_field(old: str, new: str) -> Callable[[World], Delivery]:
    def make(world: World) -> Delivery:
        good = canonical_bytes(bundle("robot-a", SERIAL, [world.deployment()]))
        return signed_bundle(world, _swap(good, old, new))

    return make


OUT_OF_RANGE: dict[str, tuple[Callable[[World], Delivery], str]] = {
    "root-serial-10e30": (_root_field("serial", HUGE), "root.json"),
    "root-serial-2e53-plus-1": (_root_field("serial", str(2**53 + 1)), "root.json"),
    "root-serial-4300-digits": (_root_field("serial", DIGITS_4300), "root.json"),
    "root-serial-4301-digits": (_root_field("serial", DIGITS_4301), "root.json"),
    "root-serial-negative": (_root_field("serial", "-7"), "root.json"),
    "root-serial-float": (_root_field("serial", "7.0"), "root.json"),
    "root-serial-bool": (_root_field("serial", "true"), "root.json"),
    "root-leaves-10e30": (_root_field("leaves", HUGE), "root.json"),
    "root-leaves-negative": (_root_field("leaves", "-2"), "root.json"),
    "proof-leaf-index-10e30": (_proof_field("leaf_index", HUGE), "proof.json"),
    "proof-leaf-index-4301-digits": (_proof_field("leaf_index", DIGITS_4301), "proof.json"),
    "proof-leaves-float": (_proof_field("leaves", "2.0"), "proof.json"),
    "bundle-serial-10e30": (_bundle_field(f'"serial":{SERIAL}', f'"serial":{HUGE}'), "bundle.json"),
    "bundle-serial-4301-digits": (
        _bundle_field(f'"serial":{SERIAL}', f'"serial":{DIGITS_4301}'),
        "bundle.json",
    ),
    "bundle-serial-bool": (_bundle_field(f'"serial":{SERIAL}', '"serial":true'), "bundle.json"),
    "bundle-generation-10e30": (_bundle_field('"generation":1', f'"generation":{HUGE}'), "bundle.json"),
    "bundle-generation-negative": (_bundle_field('"generation":1', '"generation":-1'), "bundle.json"),
    "bundle-approvals-required-float": (
        _bundle_field('"approvals_required":1', '"approvals_required":1.0'),
        "bundle.json",
    ),
    "bundle-config-int-10e30": (_bundle_field('"max_speed":1.5', f'"max_speed":{HUGE}'), "bundle.json"),
    "bundle-config-int-4300-digits": (
        _bundle_field('"max_speed":1.5', f'"max_speed":-{DIGITS_4300}'),
        "bundle.json",
    ),
}


@pytest.mark.parametrize(("make", "file"), OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
def test_a_signed_root_or_bundle_with_an_out_of_range_number_is_rejected_cleanly(
    world: World, make: Callable[[World], Delivery], file: str
) -> None:
    """Old code accepted a root of serial 10**30 (a robot would then refuse every real serial as a
    rollback) and, on older pydantic-core, raised a bare ValueError for 4,301 digits."""
    error = world.rejected(make(world))
    assert error.reason is Reason.BUNDLE_INVALID
    assert error.diagnostics[0].file == file
    assert len(str(error)) < 1000  # names the field, does not echo thousands of digits


def test_a_root_at_the_largest_serial_still_verifies(world: World) -> None:
    top = 2**53
    signed = world.publish(serial=top)
    assert world.verify(signed["robot-a"], last_serial=top - 1).root.serial == top


# --- a compromised controller: what it cannot sign for ----------------------------------------------


def test_sign_is_called_once_for_1000_bundles(world: World) -> None:
    calls: list[bytes] = []
    devices = [f"robot-{i:04d}" for i in range(1000)]
    delivered = world.publish(devices, sign_calls=calls)
    assert len(calls) == 1
    assert len(delivered) == 1000
    for device in ("robot-0000", "robot-0511", "robot-0999"):
        assert world.verify(delivered[device]).bundle.device == device


def _release(world: World, signers: tuple[str, ...]) -> BundleDeployment:
    return world.deployment(release_signatures=world.release_signatures(*signers))


RELEASE_CASES: dict[str, tuple[Callable[[World], BundleDeployment], Reason]] = {
    "one-of-two-signers": (lambda w: _release(w, ("signer1",)), Reason.RELEASE_UNSIGNED),
    "unsigned": (lambda w: w.deployment(release_signatures={}), Reason.RELEASE_UNSIGNED),
    "second-signature-by-unpinned-key": (
        lambda w: _release(w, ("signer1", "intruder")),
        Reason.RELEASE_UNSIGNED,
    ),
    "same-signer-under-two-names": (
        lambda w: w.deployment(
            release_signatures={
                **w.release_signatures("signer1"),
                f"{RELEASE_PATH}.d/{w.keys['signer2'].fingerprint}.asc": next(
                    iter(w.release_signatures("signer1").values())
                ),
            }
        ),
        Reason.RELEASE_UNSIGNED,
    ),
    "release-bytes-swapped": (
        lambda w: w.deployment(release_b64=b64(RELEASE.replace(b"a" * 64, b"b" * 64))),
        Reason.RELEASE_UNSIGNED,
    ),
    "signed-release-passed-off-as-another-version": (
        lambda w: w.deployment(
            version="1.3.0",
            release_path="releases/navigator/1.3.0.yaml",
            release_signatures=w.release_signatures(
                "signer1", "signer2", path="releases/navigator/1.3.0.yaml"
            ),
        ),
        Reason.RELEASE_MISMATCH,
    ),
}


@pytest.mark.parametrize(("make", "reason"), RELEASE_CASES.values(), ids=RELEASE_CASES.keys())
def test_release_not_vouched_for_is_rejected(
    world: World, make: Callable[[World], BundleDeployment], reason: Reason
) -> None:
    error = world.rejected(world.publish(deployment=make(world))["robot-a"])
    assert error.reason is reason
    assert error.diagnostics[0].field is not None and error.diagnostics[0].field.startswith("deployments[0]")


APPROVAL_CASES: dict[str, tuple[Callable[[World], BundleDeployment], Reason | None]] = {
    "canary-one-approval": (lambda w: w.deployment(approvals=w.approvals("approver1")), None),
    "production-one-of-two": (
        lambda w: w.deployment(
            stage=Stage.PRODUCTION, approvals_required=2, approvals=w.approvals("approver1")
        ),
        Reason.APPROVALS_BELOW_THRESHOLD,
    ),
    "controller-claims-zero-needed": (
        lambda w: w.deployment(approvals_required=0, approvals={}),
        Reason.APPROVALS_BELOW_THRESHOLD,
    ),
    "approval-by-unpinned-key": (
        lambda w: w.deployment(approvals=w.approvals("intruder")),
        Reason.APPROVALS_BELOW_THRESHOLD,
    ),
    "rollout-edit-voids-approvals": (
        lambda w: w.deployment(rollout_b64=b64(ROLLOUT_WIDENED)),
        Reason.APPROVALS_BELOW_THRESHOLD,
    ),
    "pausing-keeps-approvals": (lambda w: w.deployment(rollout_b64=b64(ROLLOUT_PAUSED)), None),
    "staging-needs-none": (
        lambda w: w.deployment(stage=Stage.STAGING, approvals_required=0, approvals={}),
        None,
    ),
}


@pytest.mark.parametrize(("make", "reason"), APPROVAL_CASES.values(), ids=APPROVAL_CASES.keys())
def test_approvals_meet_the_robots_own_threshold(
    world: World, make: Callable[[World], BundleDeployment], reason: Reason | None
) -> None:
    delivery = world.publish(deployment=make(world))["robot-a"]
    if reason is None:
        assert world.verify(delivery).bundle.deployments[0].rollout == ROLLOUT_NAME
    else:
        assert world.rejected(delivery).reason is reason


# --- builder and anchors ---------------------------------------------------------------------------


def test_builder_refuses_a_bundle_keyed_under_another_device(world: World) -> None:
    with pytest.raises(ValueError, match="robot-b"):
        build_signed_bundles(
            FLEET, {"robot-a": bundle("robot-b", SERIAL, [])}, SERIAL, ISSUED, EXPIRES, lambda _: b""
        )


def test_builder_output_is_deterministic(world: World) -> None:
    bundles = {d: bundle(d, SERIAL, []) for d in ("robot-b", "robot-a")}
    first = build_signed_bundles(FLEET, bundles, SERIAL, ISSUED, EXPIRES, lambda _: b"sig")
    second = build_signed_bundles(
        FLEET, dict(reversed(bundles.items())), SERIAL, ISSUED, EXPIRES, lambda _: b"sig"
    )
    assert first == second


@pytest.mark.parametrize(
    ("threshold", "signers"),
    [(0, 2), (3, 2), (1, 0)],
    ids=["zero-threshold", "threshold-above-signers", "no-signers"],
)
def test_anchors_with_unreachable_release_threshold_fail_closed(threshold: int, signers: int) -> None:
    with pytest.raises(SetupError, match="release_threshold"):
        TrustAnchors(
            controller=frozenset({"C" * 40}),
            release_signers=frozenset(f"{i:X}" * 40 for i in range(signers)),
            release_threshold=threshold,
            approvers=frozenset(),
            approvals_required={},
        )


# --- config instances: what the robot merges itself, and what approvals cover ---------------------

DEVICE_A = "configs/navigator/device-robot-a.yaml"
DEVICE_B = "configs/navigator/device-robot-b.yaml"
COHORT = "configs/navigator/cohort-canary.yaml"
SLOWER = {DEFAULT_CONFIG: config_file("default", {"max_speed": 0.9})}
LAYERED = {
    DEFAULT_CONFIG: config_file("default", {"max_speed": 1.5}),
    COHORT: config_file("cohort-canary", {"max_speed": 1.2}),
    DEVICE_A: config_file("device-robot-a", {"max_speed": 0.5}),
    DEVICE_B: config_file("device-robot-b", {"max_speed": 0.7}),
}


def test_robot_merges_its_config_layers_itself(world: World) -> None:
    deployment = world.with_configs(LAYERED, [DEFAULT_CONFIG, COHORT, DEVICE_A])
    verified = world.verify(world.publish(("robot-a",), deployment=deployment)["robot-a"])
    assert verified.bundle.deployments[0].config == {"max_speed": 0.5}


def test_config_outside_release_schema_is_rejected_naming_the_file_and_field(world: World) -> None:
    deployment = world.with_configs({DEFAULT_CONFIG: config_file("default", {"max_speed": 9.0})})
    error = world.rejected(world.publish(deployment=deployment)["robot-a"])
    assert error.reason is Reason.CONFIG_INVALID
    assert (error.diagnostics[0].file, error.diagnostics[0].field) == (DEFAULT_CONFIG, "values.max_speed")


def test_config_outside_schema_in_a_device_layer_names_that_layer(world: World) -> None:
    configs = {**LAYERED, DEVICE_A: config_file("device-robot-a", {"max_speed": 3})}
    deployment = world.with_configs(configs, [DEFAULT_CONFIG, COHORT, DEVICE_A])
    error = world.rejected(world.publish(("robot-a",), deployment=deployment)["robot-a"])
    assert (error.reason, error.diagnostics[0].file) == (Reason.CONFIG_INVALID, DEVICE_A)


CONFIG_ATTACKS: dict[str, tuple[Callable[[World], BundleDeployment], Reason]] = {
    "merged-values-not-the-merge-of-the-files": (
        lambda w: w.deployment(config={"max_speed": 1.9}),
        Reason.CONFIG_MISMATCH,
    ),
    "values-without-files": (lambda w: w.deployment(config_files=[]), Reason.CONFIG_MISMATCH),
    "config-edit-voids-approvals": (
        lambda w: w.with_configs(SLOWER, approvals=w.approvals("approver1")),
        Reason.APPROVALS_BELOW_THRESHOLD,
    ),
    "config-bytes-swapped-under-the-approved-root": (
        lambda w: w.deployment(
            config={"max_speed": 0.9},
            config_files=[
                BundleConfigFile(
                    path=DEFAULT_CONFIG,
                    b64=b64(SLOWER[DEFAULT_CONFIG]),
                    proof=ConfigSet(CONFIGS).proof(DEFAULT_CONFIG),
                )
            ],
        ),
        Reason.NOT_INCLUDED,
    ),
    "a-layer-dropped-from-the-set-count": (
        lambda w: w.with_configs(LAYERED, [DEFAULT_CONFIG], config_count=3),
        Reason.NOT_INCLUDED,
    ),
    "another-robots-device-file": (
        lambda w: w.with_configs(LAYERED, [DEFAULT_CONFIG, DEVICE_B]),
        Reason.BUNDLE_INVALID,
    ),
    "layers-out-of-precedence-order": (
        lambda w: w.with_configs(LAYERED, [COHORT, DEFAULT_CONFIG]),
        Reason.BUNDLE_INVALID,
    ),
    "a-file-of-another-app": (
        lambda w: w.with_configs({"configs/other/default.yaml": CONFIGS[DEFAULT_CONFIG]}),
        Reason.BUNDLE_INVALID,
    ),
}


@pytest.mark.parametrize(("make", "reason"), CONFIG_ATTACKS.values(), ids=CONFIG_ATTACKS.keys())
def test_config_the_approvals_do_not_cover_is_rejected(
    world: World, make: Callable[[World], BundleDeployment], reason: Reason
) -> None:
    error = world.rejected(world.publish(("robot-a",), deployment=make(world))["robot-a"])
    assert error.reason is reason, str(error)


def test_an_approved_config_edit_verifies(world: World) -> None:
    delivery = world.publish(deployment=world.with_configs(SLOWER))["robot-a"]
    assert world.verify(delivery).bundle.deployments[0].config == {"max_speed": 0.9}
