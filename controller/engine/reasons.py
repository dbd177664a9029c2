"""Machine-readable reasons the rollout engine writes into rollout and wave state (pure values).

They appear in ``rollouts/<name>.json`` on the state branch, in audit lines and on the status
pages, so values are stable snake_case strings: add new ones, never rename.
"""

from __future__ import annotations

from fleetcd.compat import StrEnum


class HoldReason(StrEnum):
    """Why a robot that is due did not get its deployment on this tick."""

    NOT_BEFORE = "not_before"  # schedule.not_before is still in the future
    MAINTENANCE_WINDOW = "maintenance_window"  # outside every window, in the robot's own zone
    RATE_LIMIT = "rate_limit"  # the download rate limit is used up for this minute
    PAUSED = "paused"


class EngineReason(StrEnum):
    """Why a rollout is in its phase (``RolloutState.reason``) or a wave in its phase."""

    NOT_BEFORE = "not_before"
    PAUSED = "paused"
    ABORTED = "aborted"
    THRESHOLD_CROSSED = "failure_threshold_crossed"
    ROLLBACK_DISABLED = "auto_rollback_disabled"
    NO_PREVIOUS_RELEASE = "no_previous_release"
    AWAITING_PROMOTION = "awaiting_promotion"
    DRAINING = "draining"  # every gate passed; some robots still have their deployment to finish
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_FINISHED = "rollback_finished"


def hold_text(reasons: set[HoldReason]) -> str | None:
    """A wave's reason: the hold reasons, sorted and comma-joined (None when nothing is held)."""
    return ",".join(sorted(r.value for r in reasons)) or None
