"""Cross-file validation of a fleet snapshot: ``fleetcd validate`` and step 3 of a reconcile.

Entry point: :func:`validate_snapshot` (in :mod:`fleetcd.validation.pipeline`). One module per
check: ``references``, ``overlap``, ``configs``, ``noops`` (warnings: rollouts that silently do
nothing), ``immutability``, ``artifacts``, ``trust``; ``report`` renders a result as text, JSON or
GitHub workflow annotations; ``incremental`` revalidates a snapshot at the cost of what changed,
patching a kept index for robot files (``delta``) and for releases, rollouts and config instances
(``rollout_delta``).
"""

from fleetcd.validation.pipeline import ValidationResult, sort_diagnostics, validate_snapshot

__all__ = ["ValidationResult", "sort_diagnostics", "validate_snapshot"]
