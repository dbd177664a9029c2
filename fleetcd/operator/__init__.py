"""Operator workflows on a local fleet repository: init, development keys, sign, approve.

The ``fleetcd`` CLI commands of the same names are thin wrappers around these functions; tests and
the demo call them directly. They work on a checkout (files on disk) and a GnuPG home holding the
operator's secret keys; verification never uses that keyring.
"""

from fleetcd.operator.devkeys import KeyListing, KeyStatus, generate_dev_keys, list_keys
from fleetcd.operator.fleetfile import DEV_ROLES, TrustedKey
from fleetcd.operator.repo import default_gnupghome, find_root
from fleetcd.operator.scaffold import InitResult, init_repository
from fleetcd.operator.signing import approve_rollout, approve_rollout_all, sign_release

__all__ = [
    "DEV_ROLES",
    "InitResult",
    "KeyListing",
    "KeyStatus",
    "TrustedKey",
    "approve_rollout",
    "approve_rollout_all",
    "default_gnupghome",
    "find_root",
    "generate_dev_keys",
    "init_repository",
    "list_keys",
    "sign_release",
]
