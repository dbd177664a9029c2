"""Typed, frozen models of every document kind in a fleet repository (format v1).

The JSON Schemas in ``schemas/v1/`` are generated from these classes (``fleetcd.schemas``).
"""

from fleetcd.models.agent import AgentConfig
from fleetcd.models.base import API_VERSION_V1, Stage, parse_version
from fleetcd.models.cohort import Cohort
from fleetcd.models.config import ConfigInstance
from fleetcd.models.device import Device
from fleetcd.models.fleet import Fleet
from fleetcd.models.release import Release
from fleetcd.models.rollout import Rollout
from fleetcd.models.trustroot import TrustRoot
from fleetcd.models.withdrawal import Withdrawal

DocumentModel = (
    Fleet | Device | Cohort | Release | Rollout | ConfigInstance | AgentConfig | TrustRoot | Withdrawal
)
DOCUMENT_KINDS: dict[str, type[DocumentModel]] = {
    "Fleet": Fleet,
    "Device": Device,
    "Cohort": Cohort,
    "Release": Release,
    "Rollout": Rollout,
    "ConfigInstance": ConfigInstance,
    "AgentConfig": AgentConfig,
    "TrustRoot": TrustRoot,
    "Withdrawal": Withdrawal,
}

__all__ = [
    "API_VERSION_V1",
    "DOCUMENT_KINDS",
    "AgentConfig",
    "Cohort",
    "ConfigInstance",
    "Device",
    "Fleet",
    "Release",
    "Rollout",
    "Stage",
    "TrustRoot",
    "Withdrawal",
    "parse_version",
]
