"""Receipts of finished rollout generations: content, canonical bytes, real gpg signatures, Markdown.

The scenario is the one the controller issue ends on: a canary wave crosses its threshold, the
rollout halts and rolls the canary robots back, and the receipt must say so with its numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from controller.receipts import (
    ApprovalRef,
    Receipt,
    approvals_from_state,
    build_receipt,
    load_receipt,
    receipt_outputs,
    render_receipt_md,
    render_receipt_yaml,
    sign_receipt,
    verify_receipt,
)
from controller.receipts.render import YAML_WIDTH
from controller.records.model import Action, DeploymentRecord, TargetStatus
from controller.records.transitions import apply_report, new_deployment
from controller.state.model import (
    Approver,
    RolloutPhase,
    RolloutState,
    WaveCounts,
    WavePhase,
    WaveState,
)
from fleetcd.compat import UTC
from fleetcd.models.release import Release
from fleetcd.models.rollout import FailureThreshold
from fleetcd.planning.waves import PlannedWave
from fleetcd.trust.gpg import Keyring
from tests.fleetrepo import API, image_digest
from tests.gpgkeys import KeyFactory

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
NEW_SHA = "a" * 64
OLD_SHA = "b" * 64
COMMIT = "c" * 40
TARBALL_SHA = "d" * 64


@pytest.fixture(scope="module")
def keyring(keys: KeyFactory) -> Iterator[Keyring]:
    with keys.keyring([keys.key("controller"), keys.key("mallory")]) as ring:
        yield ring


def release() -> Release:
    return Release.model_validate(
        {
            "apiVersion": API,
            "kind": "Release",
            "app": "nav",
            "version": "1.4.0",
            "artifacts": [
                {
                    "kind": "container_image",
                    "name": "nav",
                    "image": f"registry.fleet.test/nav@sha256:{image_digest('nav:1.4.0')}",
                },
                {
                    "kind": "model",
                    "name": "weights",
                    "url": "https://artifacts.fleet.test/nav/weights-1.4.0.bin",
                    "sha256": TARBALL_SHA,
                    "size": 123456,
                    "path": "/var/lib/nav/weights.bin",
                },
            ],
        }
    )


def halted_state(at: timezone = UTC) -> RolloutState:
    """Canary (r1, r2) failed its threshold; rest (r3, r4) never started."""
    return RolloutState(
        name="nav-1-4",
        app="nav",
        version="1.4.0",
        release_path="releases/nav/1.4.0.yaml",
        release_sha256=NEW_SHA,
        generation=2,
        generation_fingerprint="f" * 64,
        previous_version="1.3.2",
        phase=RolloutPhase.HALTED,
        reason="wave canary crossed its failure threshold: 1 failed of 2 (allowed 0)",
        waves=(
            WaveState(
                index=0,
                name="canary",
                devices=("r1", "r2"),
                phase=WavePhase.FAILED,
                started_at=T0.astimezone(at),
                finished_at=(T0 + timedelta(minutes=20)).astimezone(at),
                counts=WaveCounts(total=2, succeeded=1, failed=1),
                reason="failure threshold crossed",
            ),
            WaveState(index=1, name="rest", devices=("r3", "r4"), phase=WavePhase.PENDING),
        ),
        skipped=(("r9", "incompatible_family"),),
        approvers=(Approver(fingerprint="B" * 40, name="Bob"), Approver(fingerprint="A" * 40, name="Alice")),
        commit=COMMIT,
        created_at=T0.astimezone(at),
        updated_at=(T0 + timedelta(minutes=25)).astimezone(at),
    )


def record(
    device: str, action: Action, version: str, sha: str, *reports: tuple[str, str]
) -> DeploymentRecord:
    rec = new_deployment(
        rollout="nav-1-4",
        generation=2,
        device=device,
        app="nav",
        version=version,
        release_sha256=sha,
        wave=0,
        action=action,
        target_status=TargetStatus.DEPLOYED,
        at=T0 if action is Action.DEPLOY else T0 + timedelta(minutes=21),
        deadline_at=None,
    )
    for minute, (activity, error) in enumerate(reports, start=1):
        rec = apply_report(rec, activity, error, "", T0 + timedelta(minutes=minute))
    return rec


def records() -> dict[str, list[DeploymentRecord]]:
    deployed = [("downloading", "none"), ("applying", "none"), ("deployed", "none")]
    old_generation = record("r1", Action.DEPLOY, "1.3.2", OLD_SHA).model_copy(update={"generation": 1})
    return {
        "r1": [
            old_generation,  # another generation's record: not this receipt's business
            record("r1", Action.DEPLOY, "1.4.0", NEW_SHA, *deployed),
            record("r1", Action.ROLLBACK, "1.3.2", OLD_SHA, *deployed),
        ],
        "r2": [
            record("r2", Action.DEPLOY, "1.4.0", NEW_SHA, ("applying", "none"), ("failed", "failed")),
            record("r2", Action.ROLLBACK, "1.3.2", OLD_SHA, *deployed),
        ],
    }


PLANNED = (
    PlannedWave(0, "canary", ("r1", "r2"), 1800, FailureThreshold(count=0), 100.0, False),
    PlannedWave(1, "rest", ("r3", "r4"), 0, FailureThreshold(percent=20.0), 90.0, True),
)


def approvals(state: RolloutState) -> tuple[ApprovalRef, ...]:
    return approvals_from_state(state)


def receipt(at: timezone = UTC, reverse: bool = False) -> Receipt:
    state = halted_state(at)
    recs = records()
    given = approvals(state)
    if reverse:
        recs = dict(reversed(list(recs.items())))
        given = tuple(reversed(given))
    finished = (T0 + timedelta(minutes=30)).astimezone(at)
    return build_receipt(state, recs, release(), state.release_path, given, finished, planned=PLANNED)


def test_receipt_says_what_ran_where_and_who_approved() -> None:
    r = receipt()

    assert r.outcome is RolloutPhase.HALTED
    assert (r.release.app, r.release.version, r.release.sha256) == ("nav", "1.4.0", NEW_SHA)
    assert [(a.name, a.digest, a.size) for a in r.release.artifacts] == [
        ("nav", f"sha256:{image_digest('nav:1.4.0')}", None),
        ("weights", f"sha256:{TARBALL_SHA}", 123456),
    ]
    assert [(a.name, a.fingerprint, a.commit) for a in r.approvals] == [
        ("Alice", "A" * 40, COMMIT),
        ("Bob", "B" * 40, COMMIT),
    ]
    by_device = {d.device: d for d in r.devices}
    assert by_device["r1"].outcome == "succeeded" and by_device["r1"].running_version == "1.3.2"
    assert by_device["r2"].outcome == "failed" and by_device["r2"].rollback is not None
    assert by_device["r2"].rollback.outcome == "succeeded"
    assert by_device["r3"].outcome == "not_dispatched" and by_device["r3"].running_version is None
    assert r.summary == {"failed": 1, "not_dispatched": 2, "succeeded": 1}
    assert [(s.device, s.reason) for s in r.skipped] == [("r9", "incompatible_family")]


def test_receipt_carries_each_gate_with_its_numbers() -> None:
    canary, rest = receipt().waves

    assert (canary.phase, canary.passed, canary.failures, canary.reported, canary.reported_percent) == (
        "failed",
        False,
        1,
        2,
        100.0,
    )
    assert canary.failure_threshold is not None and canary.failure_threshold.count == 0
    assert (canary.soak_seconds, canary.min_reported_percent) == (1800, 100.0)
    assert canary.started_at == T0 and canary.finished_at == T0 + timedelta(minutes=20)
    assert rest.manual_promotion is True and rest.started_at is None


def test_receipt_bytes_are_deterministic_across_input_order_and_time_zone() -> None:
    first = render_receipt_yaml(receipt())
    again = render_receipt_yaml(receipt(at=timezone(timedelta(hours=-5)), reverse=True))

    assert first == again
    assert load_receipt(first) == receipt()
    assert render_receipt_yaml(load_receipt(first)) == first


def test_libyaml_writes_the_bytes_the_python_emitter_wrote() -> None:
    """render_receipt_yaml emits with libyaml: a receipt with long, non-ASCII and quoted text
    (robots' reasons are free text) renders to the bytes PyYAML's pure-Python emitter writes with
    the same options, and reads back equal."""
    reason = "Überhitzung: Motor 3 — zu heiß, 'quoted' \"double\" #hash: yes " * 4
    base = receipt()
    odd = base.model_copy(
        update={"devices": tuple(d.model_copy(update={"reason": reason}) for d in base.devices)}
    )
    for made in (base, odd):
        data = render_receipt_yaml(made)
        python = yaml.safe_dump(
            made.model_dump(mode="json"),
            sort_keys=True,
            default_flow_style=False,
            allow_unicode=True,
            width=YAML_WIDTH,
            explicit_start=False,
        )
        assert data == python.encode("utf-8")
        assert load_receipt(data) == made


def test_receipt_signed_by_the_controller_verifies(keys: KeyFactory, keyring: Keyring) -> None:
    controller = keys.key("controller")
    data = render_receipt_yaml(receipt())

    signature = sign_receipt(data, lambda b: keys.sign(b, controller))

    assert verify_receipt(data, signature, keyring, controller.fingerprint)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(b"outcome: halted", b"outcome: completed", id="outcome"),
        pytest.param(b"name: Alice", b"name: Mallory", id="approver-name"),
        pytest.param(b"failures: 1", b"failures: 0", id="gate-number"),
        pytest.param(b"running_version: 1.3.2", b"running_version: 1.4.0", id="robot-version"),
        pytest.param(b"\n", b"\n\n", id="whitespace"),
    ],
)
def test_any_edit_to_a_signed_receipt_fails_verification(
    keys: KeyFactory, keyring: Keyring, old: bytes, new: bytes
) -> None:
    controller = keys.key("controller")
    data = render_receipt_yaml(receipt())
    signature = sign_receipt(data, lambda b: keys.sign(b, controller))
    assert old in data

    edited = data.replace(old, new, 1)

    assert not verify_receipt(edited, signature, keyring, controller.fingerprint)


def test_receipt_signed_by_another_key_is_not_accepted(keys: KeyFactory, keyring: Keyring) -> None:
    controller, mallory = keys.key("controller"), keys.key("mallory")
    data = render_receipt_yaml(receipt())

    forged = sign_receipt(data, lambda b: keys.sign(b, mallory))

    assert keyring.verify_detached(data, forged).valid  # a good signature, by the wrong key
    assert not verify_receipt(data, forged, keyring, controller.fingerprint)


def test_markdown_names_approvers_and_gate_numbers() -> None:
    page = render_receipt_md(receipt())

    assert "Alice" in page and "A" * 40 in page and "Bob" in page
    canary_row = next(line for line in page.splitlines() if line.startswith("| 0 | canary |"))
    cells = [c.strip() for c in canary_row.strip("|").split("|")]
    assert cells[3:9] == ["failed", "2", "1", "1", "0", "2 (100%)"]
    assert cells[9:12] == ["100%", "> 0 robots", "1800"]
    assert "crossed its failure threshold" in page
    assert "| r1 | 0 | succeeded | deployed | 1.3.2 | succeeded |" in page


def test_robots_a_halted_rollout_never_reached_read_not_dispatched_not_unknown() -> None:
    page = render_receipt_md(receipt())

    rows = {line.split("|")[1].strip(): line for line in page.splitlines() if line.startswith("| r")}
    assert "| r3 | 1 | not_dispatched | – | not dispatched (halted) |" in rows["r3"]
    assert "not dispatched (halted)" in rows["r4"]
    assert "unknown" not in rows["r3"] + rows["r4"]
    assert "not dispatched" not in rows["r1"] + rows["r2"]  # robots it reached keep their version


def test_markdown_cells_cannot_be_broken_by_free_text() -> None:
    state = halted_state()
    odd = (ApprovalRef(fingerprint="A" * 40, name="Eve | injected\n# heading", commit=COMMIT),)
    r = build_receipt(state, records(), release(), state.release_path, odd, T0, planned=PLANNED)

    page = render_receipt_md(r)

    assert "| Eve \\| injected # heading |" in page
    assert "\n# heading" not in page


def test_unfinished_rollout_gets_no_receipt() -> None:
    state = halted_state().model_copy(update={"phase": RolloutPhase.PROGRESSING})

    with pytest.raises(ValueError, match="progressing"):
        build_receipt(state, {}, release(), state.release_path, (), T0)


def test_receipt_outputs_are_the_three_state_branch_files(keys: KeyFactory, keyring: Keyring) -> None:
    controller = keys.key("controller")

    files = receipt_outputs(receipt(), lambda b: keys.sign(b, controller))

    assert sorted(files) == [
        "receipts/nav-1-4/2.md",
        "receipts/nav-1-4/2.yaml",
        "receipts/nav-1-4/2.yaml.asc",
    ]
    assert verify_receipt(
        files["receipts/nav-1-4/2.yaml"],
        files["receipts/nav-1-4/2.yaml.asc"],
        keyring,
        controller.fingerprint,
    )
