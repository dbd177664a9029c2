"""``fleetcd keys propose|sign|chain`` on a new fleet, as an operator rotates trust through a PR.

Real console script, real gpg, the template's fleet with ``keys generate``'s development keys.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from fleetcd.trust.gpg import Signer
from tests.test_init_keys_sign_approve import (  # noqa: F401  (fixtures)
    RELEASE,
    ROLLOUT,
    TRUST_ROOT,
    fingerprints_by_name,
    fleetcd,
    keyed_original,
)
from tests.test_init_keys_sign_approve import keyed_fleet as keyed_fleet

V2 = "trust/root/2.yaml"


def new_key(fleet: Path, name: str) -> str:
    """A key in the fleet's development keyring, its public half in keys/<name>.asc."""
    with Signer(fleet / ".fleetcd" / "gnupg") as signer:
        fpr = signer.generate_key(name.title(), f"{name}@fleet.invalid")
        (fleet / "keys" / f"{name}.asc").write_bytes(signer.export_public(fpr))
    return fpr


def test_a_leaked_release_signer_is_revoked_through_propose_and_sign(keyed_fleet: Path) -> None:
    fprs = fingerprints_by_name((keyed_fleet / TRUST_ROOT).read_text())
    carol = new_key(keyed_fleet, "carol")

    proposed = fleetcd(
        "keys",
        "propose",
        "--add-signer",
        f"carol={carol}",
        "--remove-signer",
        fprs["release-signer"],
        cwd=keyed_fleet,
    )
    assert proposed.returncode == 0, proposed.stderr
    data = yaml.safe_load((keyed_fleet / V2).read_text())
    assert data["version"] == 2 and [k["fingerprint"] for k in data["release_signers"]["keys"]] == [carol]

    unsigned = fleetcd("validate", cwd=keyed_fleet)
    assert unsigned.returncode == 1 and f"{V2}: error: signatures: root keys of version 1" in unsigned.stdout
    chain = fleetcd("keys", "chain", cwd=keyed_fleet)
    assert chain.returncode == 1 and "version 1" in chain.stdout and "version 2" in chain.stdout
    assert "NOT VERIFIED" in chain.stdout.splitlines()[-1]

    signed = fleetcd("keys", "sign", cwd=keyed_fleet)
    assert signed.returncode == 0, signed.stderr
    assert (keyed_fleet / f"{V2}.d" / f"{fprs['root']}.asc").is_file()
    assert fleetcd("keys", "chain", cwd=keyed_fleet).returncode == 0

    old_signer = fleetcd("sign", RELEASE, "--key", fprs["release-signer"], cwd=keyed_fleet)
    assert old_signer.returncode == 4 and "is not a release signer in trust/root/2.yaml" in old_signer.stderr
    assert fleetcd("sign", RELEASE, "--key", carol, cwd=keyed_fleet).returncode == 0
    assert fleetcd("approve", ROLLOUT, "--all-approvers", cwd=keyed_fleet).returncode == 0
    validated = fleetcd("validate", cwd=keyed_fleet)
    assert validated.returncode == 0, validated.stdout + validated.stderr


def test_keys_sign_refuses_a_key_that_is_no_root_key(keyed_fleet: Path) -> None:
    fprs = fingerprints_by_name((keyed_fleet / TRUST_ROOT).read_text())
    assert fleetcd("keys", "propose", "--approvals", "staging=1", cwd=keyed_fleet).returncode == 0
    result = fleetcd("keys", "sign", "--key", fprs["approver-1"], cwd=keyed_fleet)
    assert result.returncode == 4 and "is no root key of version 2 or 1" in result.stderr
    assert not (keyed_fleet / f"{V2}.d").exists()


def test_propose_refuses_a_change_that_would_not_load(keyed_fleet: Path) -> None:
    result = fleetcd("keys", "propose", "--signer-threshold", "5", cwd=keyed_fleet)
    assert result.returncode == 1 and "threshold 5 exceeds" in result.stderr
    assert not (keyed_fleet / V2).exists()


def test_rotating_the_root_key_needs_the_old_and_the_new_key(keyed_fleet: Path) -> None:
    fprs = fingerprints_by_name((keyed_fleet / TRUST_ROOT).read_text())
    new_root = new_key(keyed_fleet, "root-2")
    proposed = fleetcd(
        "keys",
        "propose",
        "--add-root-key",
        f"root-2={new_root}",
        "--remove-root-key",
        fprs["root"],
        cwd=keyed_fleet,
    )
    assert proposed.returncode == 0, proposed.stderr
    assert fleetcd("keys", "sign", "--key", fprs["root"], cwd=keyed_fleet).returncode == 0
    half = fleetcd("validate", cwd=keyed_fleet)
    assert half.returncode == 1 and "root keys of version 2 itself" in half.stdout + half.stderr
    assert fleetcd("keys", "sign", "--key", new_root, cwd=keyed_fleet).returncode == 0
    chain = fleetcd("keys", "chain", cwd=keyed_fleet)
    assert chain.returncode == 0 and "root 1 of 1: root-2" in chain.stdout.splitlines()[-1]
