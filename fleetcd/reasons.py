"""Machine-readable reasons: every diagnostic, skip and status carries one of these str Enums.

They are part of the public format (they appear in ``-o json`` output, audit lines and status
files), so values are stable snake_case strings; add new ones, never rename.
"""

from __future__ import annotations

from fleetcd.compat import StrEnum


class Reason(StrEnum):
    # strict YAML
    INVALID = "invalid"
    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    BINARY = "binary"
    YAML_SYNTAX = "yaml_syntax"
    DUPLICATE_KEY = "duplicate_key"
    ALIAS_FORBIDDEN = "alias_forbidden"
    MERGE_KEY_FORBIDDEN = "merge_key_forbidden"
    TAG_FORBIDDEN = "tag_forbidden"
    TOO_DEEP = "too_deep"
    AMBIGUOUS_SCALAR = "ambiguous_scalar"
    # schema and models
    SCHEMA = "schema"
    WRONG_KIND = "wrong_kind"
    UNSAFE_NAME = "unsafe_name"
    NAME_MISMATCH = "name_mismatch"
    # cross-file
    UNKNOWN_REFERENCE = "unknown_reference"
    UNKNOWN_DEVICE = "unknown_device"
    DUPLICATE_ID = "duplicate_id"
    RELEASE_MODIFIED = "release_modified"
    RELEASE_DELETED = "release_deleted"
    CONFIG_INVALID = "config_invalid"
    UNSUPPORTED_ARTIFACT = "unsupported_artifact"
    ROLLOUT_OVERLAP = "rollout_overlap"
    # part of a rollout that does nothing: an empty wave, robots in no wave, an empty cohort, a
    # canary or batch that holds no robot back (validate warns; --strict fails)
    NO_EFFECT = "no_effect"
    # robots' status refs and reports (controller.ingest)
    NOT_A_COMMIT = "not_a_commit"  # the status ref names a blob, tree, tag or missing object
    OUT_OF_RANGE = "out_of_range"  # a number above its documented bound (fleetcd.reports)
    # trust
    SIGNATURE_MISSING = "signature_missing"
    SIGNATURE_INVALID = "signature_invalid"
    SIGNATURE_UNTRUSTED = "signature_untrusted"
    KEY_EXPIRED = "key_expired"
    KEY_REVOKED = "key_revoked"
    BELOW_THRESHOLD = "below_threshold"
    APPROVAL_MISSING = "approval_missing"
    GPG_UNAVAILABLE = "gpg_unavailable"
    # per-robot desired-state bundles (fleetcd.desired.verify), as the agent sees them
    BUNDLE_INVALID = "bundle_invalid"
    ROOT_SIGNATURE_INVALID = "root_signature_invalid"
    NOT_INCLUDED = "not_included"
    WRONG_DEVICE = "wrong_device"
    WRONG_FLEET = "wrong_fleet"
    SERIAL_MISMATCH = "serial_mismatch"
    SERIAL_ROLLBACK = "serial_rollback"
    SERIAL_REUSED = "serial_reused"
    EXPIRED = "expired"
    RELEASE_UNSIGNED = "release_unsigned"
    RELEASE_MISMATCH = "release_mismatch"
    ROLLOUT_MISMATCH = "rollout_mismatch"
    APPROVALS_BELOW_THRESHOLD = "approvals_below_threshold"
    # controller state branch (controller.errors)
    HISTORY_REWRITTEN = "history_rewritten"
    AUDIT_CHAIN_BROKEN = "audit_chain_broken"
    ILLEGAL_TRANSITION = "illegal_transition"
    # agent: health watch, customer hooks, robot-state gates, config instances
    HEALTHY = "healthy"
    APP_EXITED = "exited"
    APP_MISSING = "app_missing"
    PROBE_FAILED = "probe_failed"
    HOOK_FAILED = "hook_failed"
    GATE_CLOSED = "gate_closed"
    GATE_TIMED_OUT = "gate_timed_out"
    CONFIG_DRIFTED = "drifted"
    # agent: docker executor (agent.executors.docker)
    ENGINE_UNAVAILABLE = "engine_unavailable"
    IMAGE_NOT_FOUND = "image_not_found"
    CONTAINER_FAILED = "container_failed"


class SkipReason(StrEnum):
    """Why a robot targeted by a rollout gets nothing from it."""

    INCOMPATIBLE_FAMILY = "incompatible_family"
    INCOMPATIBLE_HARDWARE = "incompatible_hardware"
    DECOMMISSIONED = "decommissioned"
    UNKNOWN = "unknown"
    PAUSED = "paused"
    ABORTED = "aborted"
