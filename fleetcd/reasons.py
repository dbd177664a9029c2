"""Machine-readable reasons: every diagnostic, skip, record, rollout state and audit line carries one
of these str Enums, and this is their one module (shared core, pure values).

They are part of the public format (they appear in ``-o json`` output, audit lines, status files and
the controller's state branch), so values are stable snake_case strings; add new ones, never rename.
One enum per field that stores a reason, so each field accepts exactly its own list:

* :class:`Reason` — diagnostics (``fleetcd validate``, ingest, trust, the agent's journal and report).
* :class:`SkipReason` — why a targeted robot gets nothing from a rollout (plan output).
* :class:`RecordReason` — why the controller moved a deployment record (``record.reason``).
* :class:`IgnoredReport` / :class:`RefusedClaim` — why a robot's report left a record unchanged or
  was refused (audit ``device_report`` lines).
* :class:`HoldReason` / :class:`EngineReason` — why a wave or rollout waits or is in its phase
  (``rollouts/<name>.json`` on the state branch, audit lines, status pages).

A value may appear in several enums (``paused``, ``aborted``, ``not_before``): it means the same
thing wherever it appears.
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
    RELEASE_WITHDRAWN = "release_withdrawn"  # a rollout names a release a withdrawal on main withdraws
    # a release's ``requires``: an app with no release on main, a range none of them satisfies, a cycle
    REQUIRES_UNKNOWN_APP = "requires_unknown_app"
    REQUIRES_UNSATISFIABLE = "requires_unsatisfiable"
    REQUIRES_CYCLE = "requires_cycle"
    # two apps' releases delivered to one robot write one absolute config file
    CONFIG_PATH_SHARED = "config_path_shared"
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
    # an approval over the v1 payload (rollout and release only), made before approvals covered
    # the app's config instances: it counts for nothing until approved again
    APPROVAL_STALE = "approval_stale"
    GPG_UNAVAILABLE = "gpg_unavailable"
    # the trust root chain (fleetcd.trust.rootchain): trust/root/<N>.yaml
    TRUST_ROOT_VERSION = "trust_root_version"  # a gap, a repeat or a file that is not N+1
    TRUST_ROOT_ROLLBACK = "trust_root_rollback"  # older than the version already held (replay)
    TRUST_ROOT_MISSING = "trust_root_missing"
    # per-robot desired-state bundles (fleetcd.desired.verify), as the agent sees them
    BUNDLE_INVALID = "bundle_invalid"
    ROOT_SIGNATURE_INVALID = "root_signature_invalid"
    NOT_INCLUDED = "not_included"
    WRONG_DEVICE = "wrong_device"
    WRONG_SHARD = "wrong_shard"  # a robot's status report found in a status shard that is not its own
    WRONG_FLEET = "wrong_fleet"
    SERIAL_MISMATCH = "serial_mismatch"
    SERIAL_ROLLBACK = "serial_rollback"
    SERIAL_REUSED = "serial_reused"
    EXPIRED = "expired"
    RELEASE_UNSIGNED = "release_unsigned"
    RELEASE_MISMATCH = "release_mismatch"
    ROLLOUT_MISMATCH = "rollout_mismatch"
    APPROVALS_BELOW_THRESHOLD = "approvals_below_threshold"
    CONFIG_MISMATCH = "config_mismatch"  # the bundle's merged values are not the merge of its config files
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
    RELEASE_WITHDRAWN = "release_withdrawn"  # a withdrawal on main names the release (plan only)


class RecordReason(StrEnum):
    """Why the controller (not the robot) moved a deployment record (``record.reason``)."""

    TIMED_OUT = "timed_out"
    SUPERSEDED = "superseded"  # a new generation of the rollout replaced it
    UNTARGETED = "untargeted"  # the robot left the rollout's targets
    DECOMMISSIONED = "decommissioned"  # the robot was retired (``decommissioned: true``)
    ABORTED = "aborted"  # halt or abort retired it before the robot was told to run it
    # Halt or abort retired it while the robot held it in its bundle: the robot may have run it
    # before it saw the cancellation, so its outcome stays open to a late final report.
    ABORTED_AFTER_DELIVERY = "aborted_after_delivery"


class IgnoredReport(StrEnum):
    """Why the controller left a record as it was on a robot's report (the ``ignored`` of an audit
    ``device_report`` line; :func:`controller.records.transitions.judge_report`)."""

    UNCHANGED = "unchanged"  # same activity and error as recorded
    UNKNOWN_VALUE = "unknown_value"  # not an activity/error this controller knows
    NOT_REPORTABLE = "not_reportable"  # ``queued``: only the controller queues
    NOT_REQUESTED = "not_requested"  # removing/archived while the controller still wants it
    FINISHED = "finished"  # terminal: deployments are one-time use
    RETIRED = "retired"  # archived: only removal (or a cancelled record's outcome) may be reported


class RefusedClaim(StrEnum):
    """Why a robot's claim about one deployment was refused (the ``reason`` of an audit
    ``device_report`` line; :mod:`controller.ingest.reports`). A report naming another robot is
    :attr:`Reason.WRONG_DEVICE`."""

    FOREIGN_DEPLOYMENT = "foreign_deployment"  # the id belongs to another robot
    UNKNOWN_DEPLOYMENT = "unknown_deployment"  # no robot was given this id (or it aged out)
    MISMATCHED_DEPLOYMENT = "mismatched_deployment"  # right id, wrong app or version
    DUPLICATE_DEPLOYMENT = "duplicate_deployment"  # the same id twice in one report


class HoldReason(StrEnum):
    """Why a robot a rollout targets is still waiting for its deployment: one per waiting robot
    (:mod:`controller.state.holds`), and a wave's ``reason`` for the robots held in it.

    The first six hold a robot that is due (its wave runs) on this tick (the engine's dispatch);
    the others say what the robot's wave, or the whole rollout, waits for."""

    NOT_BEFORE = "not_before"  # schedule.not_before is still in the future
    MAINTENANCE_WINDOW = "maintenance_window"  # outside every window, in the robot's own zone
    RATE_LIMIT = "rate_limit"  # the download rate limit is used up for this minute
    PAUSED = "paused"
    # the release requires an app the robot does not run at a version in range (release ``requires``)
    REQUIREMENT_UNMET = "requirement_unmet"
    # an app the robot runs requires this app at a version the new release is not (a downgrade)
    REQUIRED_BY_RUNNING_APP = "required_by_running_app"
    # An earlier wave has not passed its gate: its robots' reports are still to come (the share it
    # needs reported, within its failure budget), or it is itself held.
    EARLIER_WAVE = "earlier_wave"
    EARLIER_WAVE_SOAKING = "earlier_wave_soaking"  # an earlier wave met its gate and soaks
    AWAITING_PROMOTION = "awaiting_promotion"  # an earlier wave waits for a commit bumping ``promote``
    APPROVAL_MISSING = "approval_missing"  # the rollout lacks approvals (``plan``; main stalls on it)
    HALTED = "halted"  # a wave crossed its failure threshold: nothing new starts this generation
    ABORTED = "aborted"
    STALLED = "stalled"  # main holds invalid content: nothing moves until a new commit
    RELEASE_WITHDRAWN = "release_withdrawn"  # a withdrawal names the release: nothing new starts
    DUE = "due"  # nothing holds it: its deployment is written by the next reconcile


class EngineReason(StrEnum):
    """Why a rollout is in its phase (``RolloutState.reason``) or a wave in its phase."""

    NOT_BEFORE = "not_before"
    PAUSED = "paused"
    ABORTED = "aborted"
    THRESHOLD_CROSSED = "failure_threshold_crossed"
    ROLLBACK_DISABLED = "auto_rollback_disabled"  # written before ``on_halt`` replaced auto_rollback
    NO_PREVIOUS_RELEASE = "no_previous_release"
    HALT_POLICY_PAUSE = "on_halt_pause"  # halted without rolling back: the operator decides
    PREVIOUS_WITHDRAWN = "previous_release_withdrawn"  # the rollback target was withdrawn
    RELEASE_WITHDRAWN = "release_withdrawn"  # the rollout's release was withdrawn: nothing new starts
    AWAITING_PROMOTION = "awaiting_promotion"
    DRAINING = "draining"  # every gate passed; some robots still have their deployment to finish
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_FINISHED = "rollback_finished"
