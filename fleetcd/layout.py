"""Where each document kind lives in a fleet repository (format v1), and the reverse lookup.

Pure path arithmetic: no I/O. Paths are POSIX, relative to the repository root, as git stores them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleetcd.compat import StrEnum

FLEET_FILE = "fleet.yaml"
MANAGED_DIRS = (
    "devices",
    "cohorts",
    "releases",
    "rollouts",
    "approvals",
    "configs",
    "keys",
    "trust",
    "withdrawals",
)
TRUST_ROOT_DIR = "trust/root"
CONFIGS_PREFIX = "configs/"  # every config instance's path starts so (config_path): a cheap filter
SIGNATURE_DIR_SUFFIX = ".yaml.d"

_NAME = r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*"
_FPR = r"[0-9A-F]{40}"


class FileKind(StrEnum):
    FLEET = "Fleet"
    DEVICE = "Device"
    COHORT = "Cohort"
    RELEASE = "Release"
    ROLLOUT = "Rollout"
    CONFIG = "ConfigInstance"
    RELEASE_SIGNATURE = "release-signature"
    APPROVAL = "approval"
    KEY = "key"
    TRUST_ROOT = "TrustRoot"
    TRUST_ROOT_SIGNATURE = "trust-root-signature"
    WITHDRAWAL = "Withdrawal"
    WITHDRAWAL_APPROVAL = "withdrawal-approval"


@dataclass(frozen=True)
class Classified:
    """A repository path recognised as one kind, with the names its location implies."""

    kind: FileKind
    name: str = ""  # device id, cohort/rollout name, app, or key file stem
    version: str = ""  # release version (also for its signatures)
    fingerprint: str = ""  # signer/approver fingerprint for .asc files
    stem: str = ""  # config file stem (default, cohort-<name>, device-<id>)


_PATTERNS: list[tuple[re.Pattern[str], FileKind]] = [
    (re.compile(rf"devices/(?P<name>{_NAME})\.yaml"), FileKind.DEVICE),
    (re.compile(rf"cohorts/(?P<name>{_NAME})\.yaml"), FileKind.COHORT),
    (re.compile(rf"releases/(?P<name>{_NAME})/(?P<version>[^/]+)\.yaml"), FileKind.RELEASE),
    (
        re.compile(rf"releases/(?P<name>{_NAME})/(?P<version>[^/]+)\.yaml\.d/(?P<fpr>{_FPR})\.asc"),
        FileKind.RELEASE_SIGNATURE,
    ),
    (re.compile(rf"rollouts/(?P<name>{_NAME})\.yaml"), FileKind.ROLLOUT),
    (re.compile(rf"approvals/(?P<name>{_NAME})/(?P<fpr>{_FPR})\.asc"), FileKind.APPROVAL),
    (re.compile(rf"configs/(?P<name>{_NAME})/(?P<stem>{_NAME})\.yaml"), FileKind.CONFIG),
    (re.compile(rf"keys/(?P<name>{_NAME})\.asc"), FileKind.KEY),
    (re.compile(rf"withdrawals/(?P<name>{_NAME})/(?P<version>[^/]+)\.yaml"), FileKind.WITHDRAWAL),
    (
        re.compile(rf"withdrawals/(?P<name>{_NAME})/(?P<version>[^/]+)\.yaml\.d/(?P<fpr>{_FPR})\.asc"),
        FileKind.WITHDRAWAL_APPROVAL,
    ),
    (re.compile(r"trust/root/(?P<version>[1-9][0-9]{0,6})\.yaml"), FileKind.TRUST_ROOT),
    (
        re.compile(rf"trust/root/(?P<version>[1-9][0-9]{{0,6}})\.yaml\.d/(?P<fpr>{_FPR})\.asc"),
        FileKind.TRUST_ROOT_SIGNATURE,
    ),
]


def classify(path: str) -> Classified | None:
    """The kind a path holds, or None when the path is not a recognised fleet document."""
    if path == FLEET_FILE:
        return Classified(FileKind.FLEET)
    for pattern, kind in _PATTERNS:
        match = pattern.fullmatch(path)
        if match:
            groups = match.groupdict()
            return Classified(
                kind,
                name=groups.get("name") or "",
                version=groups.get("version") or "",
                fingerprint=groups.get("fpr") or "",
                stem=groups.get("stem") or "",
            )
    return None


def is_managed(path: str) -> bool:
    """True for paths fleetcd reads (and so must understand); README.md files are allowed anywhere."""
    if path == FLEET_FILE:
        return True
    top = path.split("/", 1)[0]
    return top in MANAGED_DIRS and not path.rsplit("/", 1)[-1].lower().startswith("readme")


def device_path(device_id: str) -> str:
    return f"devices/{device_id}.yaml"


def cohort_path(name: str) -> str:
    return f"cohorts/{name}.yaml"


def release_path(app: str, version: str) -> str:
    return f"releases/{app}/{version}.yaml"


def release_signature_path(app: str, version: str, fingerprint: str) -> str:
    return f"{release_path(app, version)}.d/{fingerprint}.asc"


def withdrawal_path(app: str, version: str) -> str:
    return f"withdrawals/{app}/{version}.yaml"


def withdrawal_approval_path(app: str, version: str, fingerprint: str) -> str:
    """An approver's signature over the withdrawal (:func:`fleetcd.trust.approval.withdrawal_payload`)."""
    return f"{withdrawal_path(app, version)}.d/{fingerprint}.asc"


def rollout_path(name: str) -> str:
    return f"rollouts/{name}.yaml"


def approval_path(rollout: str, fingerprint: str) -> str:
    return f"approvals/{rollout}/{fingerprint}.asc"


def config_path(app: str, stem: str) -> str:
    return f"{CONFIGS_PREFIX}{app}/{stem}.yaml"


def trust_root_path(version: int) -> str:
    """Version ``version`` of the fleet's trust root (kind TrustRoot)."""
    return f"{TRUST_ROOT_DIR}/{version}.yaml"


def trust_root_signature_path(version: int, fingerprint: str) -> str:
    return f"{trust_root_path(version)}.d/{fingerprint}.asc"
