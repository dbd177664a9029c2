"""A compromised controller against a robot's verifier: controller-signed bundles that still lie.

The controller's key signs the root, so a stolen key (or a buggy controller) can put anything in a
bundle. What it cannot forge are the release signers' and approvers' signatures, and the robot checks
every claim the bundle makes against those signed bytes. Each case here is one such lie; the robot
refuses it, says why (reason) and where (file and field), and nothing from the bundle is used.
Same world as tests/test_desired_verify.py: real gpg keys, ``build_signed_bundles``, ``verify_bundle``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

import pytest

from fleetcd.desired import Bundle, BundleConfigFile, BundleDeployment, TrustAnchors, canonical_bytes
from fleetcd.desired.configset import MAX_CONFIG_FILE_BYTES, ConfigSet
from fleetcd.errors import SetupError
from fleetcd.models import Stage
from fleetcd.reasons import Reason
from tests.desiredworld import (
    CONFIGS,
    DEFAULT_CONFIG,
    EXPIRES,
    ISSUED,
    NOW,
    RELEASE,
    RELEASE_PATH,
    ROLLOUT,
    ROLLOUT_NAME,
    ROLLOUT_PATH,
    SERIAL,
    World,
    b64,
    bundle,
    config_fields,
    config_file,
    signed_bundle,
)
from tests.desiredworld import world as world  # the module fixture

OTHER_RELEASE_PATH = "releases/navigator/1.3.0.yaml"
RELEASE_NO_CONFIG = RELEASE.split(b"config:")[0]
AT = "deployments[0]"


def _unconfigured(w: World, **overrides: object) -> BundleDeployment:
    """A staging deployment (no approvals needed) of a release signed without a config schema."""
    return w.deployment(
        release_b64=b64(RELEASE_NO_CONFIG),
        release_signatures=w.release_signatures("signer1", "signer2", data=RELEASE_NO_CONFIG),
        stage=Stage.STAGING,
        approvals_required=0,
        approvals={},
        **overrides,
    )


# Each: a lying deployment → (reason, file the robot names or None for bundle.json, field)
LIES: dict[str, tuple[Callable[[World], BundleDeployment], Reason, str | None, str]] = {
    "release-path-of-another-version": (
        lambda w: w.deployment(release_path=OTHER_RELEASE_PATH),
        Reason.RELEASE_MISMATCH,
        None,
        f"{AT}.release_path",
    ),
    "rollout-path-of-another-rollout": (
        lambda w: w.deployment(rollout_path="rollouts/other.yaml"),
        Reason.ROLLOUT_MISMATCH,
        None,
        f"{AT}.rollout_path",
    ),
    "signature-filed-under-another-release": (
        lambda w: w.deployment(
            release_signatures=w.release_signatures("signer1", "signer2", path="releases/other/1.0.0.yaml")
        ),
        Reason.BUNDLE_INVALID,
        None,
        f"{AT}.release_signatures",
    ),
    "signature-in-a-subfolder": (
        lambda w: w.deployment(
            release_signatures={
                f"{RELEASE_PATH}.d/x/{k.rsplit('/', 1)[1]}": v for k, v in w.good_signatures.items()
            }
        ),
        Reason.BUNDLE_INVALID,
        None,
        f"{AT}.release_signatures",
    ),
    "approvals-of-another-rollout": (
        lambda w: w.deployment(
            approvals={k.replace(ROLLOUT_NAME, "other-rollout"): v for k, v in w.good_approvals.items()}
        ),
        Reason.BUNDLE_INVALID,
        None,
        f"{AT}.approvals",
    ),
    "release-not-base64": (
        lambda w: w.deployment(release_b64="%%% not base64 %%%"),
        Reason.BUNDLE_INVALID,
        None,
        f"{AT}.release_b64",
    ),
    "release-signed-by-one-of-two-signers": (
        lambda w: w.deployment(release_signatures=w.release_signatures("signer1")),
        Reason.RELEASE_UNSIGNED,
        RELEASE_PATH,
        f"{AT}.release_signatures",
    ),
    "release-signed-by-the-intruder": (
        lambda w: w.deployment(release_signatures=w.release_signatures("signer1", "intruder")),
        Reason.RELEASE_UNSIGNED,
        RELEASE_PATH,
        f"{AT}.release_signatures",
    ),
    # a genuinely signed 1.2.0 replayed as 1.3.0: the signatures verify, the contents do not match
    "signed-release-relabelled-as-another-version": (
        lambda w: w.deployment(
            version="1.3.0",
            release_path=OTHER_RELEASE_PATH,
            release_signatures=w.release_signatures("signer1", "signer2", path=OTHER_RELEASE_PATH),
        ),
        Reason.RELEASE_MISMATCH,
        OTHER_RELEASE_PATH,
        f"{AT}.version",
    ),
    "signed-bytes-that-are-no-release": (
        lambda w: w.deployment(
            release_b64=b64(b"kind: Release\nnot: [a release\n"),
            release_signatures=w.release_signatures(
                "signer1", "signer2", data=b"kind: Release\nnot: [a release\n"
            ),
        ),
        Reason.BUNDLE_INVALID,
        RELEASE_PATH,
        f"{AT}.release_b64",
    ),
    "rollout-file-of-another-rollout-name": (
        lambda w: w.deployment(rollout="other", rollout_path="rollouts/other.yaml", approvals={}),
        Reason.ROLLOUT_MISMATCH,
        "rollouts/other.yaml",
        AT,
    ),
    "rollout-delivering-another-app": (
        lambda w: w.deployment(rollout_b64=b64(ROLLOUT.replace(b"app: navigator", b"app: mapper"))),
        Reason.ROLLOUT_MISMATCH,
        ROLLOUT_PATH,
        AT,
    ),
    "rollout-not-yaml": (
        lambda w: w.deployment(rollout_b64=b64(b"\x00\x01 not yaml: [")),
        Reason.BUNDLE_INVALID,
        ROLLOUT_PATH,
        f"{AT}.rollout_b64",
    ),
    "production-with-one-approval-of-the-robots-two": (
        lambda w: w.deployment(stage=Stage.PRODUCTION, approvals=w.approvals("approver1")),
        Reason.APPROVALS_BELOW_THRESHOLD,
        ROLLOUT_PATH,
        f"{AT}.approvals",
    ),
    "approvals-required-lowered-below-the-robots-floor": (
        lambda w: w.deployment(approvals_required=0, approvals={}),
        Reason.APPROVALS_BELOW_THRESHOLD,
        ROLLOUT_PATH,
        f"{AT}.approvals",
    ),
    "approval-of-the-intruder": (
        lambda w: w.deployment(approvals=w.approvals("intruder")),
        Reason.APPROVALS_BELOW_THRESHOLD,
        ROLLOUT_PATH,
        f"{AT}.approvals",
    ),
    "config-for-a-release-with-no-schema": (
        _unconfigured,
        Reason.CONFIG_INVALID,
        RELEASE_PATH,
        f"{AT}.config",
    ),
    "config-file-not-base64": (
        lambda w: w.deployment(
            config_files=[
                BundleConfigFile(
                    path=DEFAULT_CONFIG, b64="@@@@", proof=ConfigSet(CONFIGS).proof(DEFAULT_CONFIG)
                )
            ]
        ),
        Reason.BUNDLE_INVALID,
        None,
        f"{AT}.config_files[0].b64",
    ),
    "config-file-over-its-size-cap": (
        lambda w: w.deployment(
            config_files=[
                BundleConfigFile(
                    path=DEFAULT_CONFIG,
                    b64=b64(b"#" * (MAX_CONFIG_FILE_BYTES + 1)),
                    proof=ConfigSet(CONFIGS).proof(DEFAULT_CONFIG),
                )
            ]
        ),
        Reason.TOO_LARGE,
        DEFAULT_CONFIG,
        f"{AT}.config_files[0].b64",
    ),
    "config-file-of-an-unknown-scope": (
        lambda w: w.with_configs({"configs/navigator/site-berlin.yaml": CONFIGS[DEFAULT_CONFIG]}),
        Reason.BUNDLE_INVALID,
        "configs/navigator/site-berlin.yaml",
        f"{AT}.config_files[0].path",
    ),
    # approved bytes, but filed at the default layer while they are the canary cohort's file
    "cohort-file-posing-as-the-default-layer": (
        lambda w: w.with_configs({DEFAULT_CONFIG: config_file("cohort-canary", {"max_speed": 1.5})}),
        Reason.CONFIG_INVALID,
        DEFAULT_CONFIG,
        f"{AT}.config_files[0].b64",
    ),
}


@pytest.mark.parametrize(("lie", "reason", "file", "field"), LIES.values(), ids=LIES.keys())
def test_a_controller_signed_bundle_that_lies_is_refused_naming_file_and_field(
    world: World,
    lie: Callable[[World], BundleDeployment],
    reason: Reason,
    file: str | None,
    field: str,
) -> None:
    delivery = world.publish(("robot-a",), deployment=lie(world))["robot-a"]
    error = world.rejected(delivery)
    assert error.reason is reason, str(error)
    (diagnostic,) = error.diagnostics
    assert (diagnostic.file, diagnostic.field) == (file or "bundle.json", field)


def test_a_staging_deployment_needs_no_approval_where_the_robot_asks_none(world: World) -> None:
    # the counterpart of the floors above: the table is not refusing everything
    deployment = world.deployment(stage=Stage.STAGING, approvals_required=0, approvals={})
    verified = world.verify(world.publish(("robot-a",), deployment=deployment)["robot-a"])
    assert verified.releases["d-0001"].version == "1.2.0"


def test_a_release_without_config_and_a_deployment_without_config_verify(world: World) -> None:
    deployment = _unconfigured(world, **config_fields({}))
    verified = world.verify(world.publish(("robot-a",), deployment=deployment)["robot-a"])
    assert verified.bundle.deployments[0].config is None


# --- the bundle's own bytes: one document, one encoding -------------------------------------------


def _bundle_bytes(world: World) -> bytes:
    return canonical_bytes(bundle("robot-a", SERIAL, [world.deployment()]))


def test_a_bundle_with_whitespace_is_refused_as_not_canonical(world: World) -> None:
    spaced = _bundle_bytes(world).replace(b'"serial":', b'"serial": ', 1)
    error = world.rejected(signed_bundle(world, spaced))
    assert error.reason is Reason.BUNDLE_INVALID
    assert error.diagnostics[0].file == "bundle.json"


def test_a_duplicate_key_cannot_smuggle_a_second_value_past_the_signature(world: World) -> None:
    # JSON parsers disagree on which duplicate wins; the canonical re-encoding has one key, so it differs
    raw = _bundle_bytes(world)
    smuggled = raw.replace(b'"device":"robot-a"', b'"device":"robot-b","device":"robot-a"', 1)
    assert smuggled != raw
    error = world.rejected(signed_bundle(world, smuggled))
    assert error.reason is Reason.BUNDLE_INVALID


def test_a_bundle_that_is_not_json_is_refused_without_a_traceback(world: World) -> None:
    error = world.rejected(signed_bundle(world, b"\xff\xfe not json"))
    assert (error.reason, error.diagnostics[0].file) == (Reason.BUNDLE_INVALID, "bundle.json")


# --- the trust-root version a bundle names -----------------------------------------------------------


def test_a_bundle_naming_an_older_trust_version_than_the_robot_holds_is_a_replay(world: World) -> None:
    error = world.rejected(world.publish(("robot-a",))["robot-a"], trust_version=2)
    assert (error.reason, error.diagnostics[0].field) == (Reason.TRUST_ROOT_ROLLBACK, "trust_version")


def test_a_bundle_naming_a_trust_version_the_chain_does_not_reach_is_refused(world: World) -> None:
    newer = bundle("robot-a", SERIAL, [world.deployment()])
    raw = canonical_bytes(replace_trust_version(newer, 2))
    error = world.rejected(signed_bundle(world, raw), trust_version=1)
    assert (error.reason, error.diagnostics[0].field) == (Reason.TRUST_ROOT_VERSION, "trust_version")


def test_the_trust_version_the_robot_holds_verifies(world: World) -> None:
    assert world.verify(world.publish(("robot-a",))["robot-a"], trust_version=1).root.serial == SERIAL


def replace_trust_version(b: Bundle, version: int) -> Bundle:
    return Bundle.model_validate({**b.model_dump(), "trust_version": version})


# --- clocks and anchors: the caller's mistakes fail loudly ------------------------------------------


def test_a_naive_clock_is_a_programming_error_not_a_verdict(world: World) -> None:
    with pytest.raises(ValueError, match="timezone"):
        world.verify(world.publish(("robot-a",))["robot-a"], now=datetime(2026, 3, 1, 7, 0))


def test_a_root_issued_far_ahead_of_the_robots_clock_is_accepted_and_flagged(world: World) -> None:
    delivery = world.publish(("robot-a",))["robot-a"]
    verified = world.verify(delivery, now=ISSUED.replace(year=2025))
    assert verified.clock_suspect
    assert not world.verify(delivery, now=NOW).clock_suspect
    assert EXPIRES > NOW


def test_the_expiry_is_the_earlier_of_root_and_bundle(world: World) -> None:
    short = bundle("robot-a", SERIAL, [world.deployment()])
    raw = canonical_bytes(short.model_copy(update={"expires_at": NOW}))
    error = world.rejected(signed_bundle(world, raw))
    assert error.reason is Reason.EXPIRED
    assert hashlib.sha256(raw).hexdigest()  # the bytes were included and signed: only expiry refused them


@pytest.mark.parametrize(
    "anchors",
    [
        {"controller": frozenset({"a" * 40})},
        {"release_signers": frozenset({"B" * 39})},
        {"approvers": frozenset({"0x" + "C" * 38})},
        {"controller": frozenset()},
    ],
    ids=["lower-case-controller", "short-signer", "0x-approver", "no-controller"],
)
def test_anchors_a_robot_could_never_match_are_refused_at_setup(anchors: dict[str, frozenset[str]]) -> None:
    fields: dict[str, object] = {
        "controller": frozenset({"A" * 40}),
        "release_signers": frozenset({"B" * 40}),
        "release_threshold": 1,
        "approvers": frozenset({"C" * 40}),
        "approvals_required": {Stage.CANARY: 1},
    }
    with pytest.raises(SetupError):
        TrustAnchors(**{**fields, **anchors})  # type: ignore[arg-type]


def test_a_stage_the_robot_forgot_gets_its_highest_floor() -> None:
    anchors = TrustAnchors(
        controller=frozenset({"A" * 40}),
        release_signers=frozenset({"B" * 40}),
        release_threshold=1,
        approvers=frozenset({"C" * 40}),
        approvals_required={Stage.STAGING: 0, Stage.CANARY: 2},
    )
    assert anchors.approvals_floor(Stage.PRODUCTION) == 2
    assert anchors.approvals_floor(Stage.STAGING) == 0


def test_the_deployment_fixture_is_unchanged_by_the_lies(world: World) -> None:
    # the table builds from world.deployment(); make sure it still verifies after all of them ran
    assert world.verify(world.publish(("robot-a",))["robot-a"]).releases["d-0001"].app == "navigator"
