"""Which commits on main the controller may act on: the commit policy of ``fleet.yaml`` (pure).

Step 2 (verify) of a reconcile calls :func:`check_history` before any file of the new tip is read.
"""

from __future__ import annotations

from controller.policy.commits import CommitCheck, CommitReader, PolicyVerdict, check_history

__all__ = ["CommitCheck", "CommitReader", "PolicyVerdict", "check_history"]
