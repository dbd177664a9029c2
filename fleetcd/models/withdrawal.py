"""``withdrawals/<app>/<version>.yaml`` (kind Withdrawal): a published release no robot may get anew.

Releases are immutable files, so withdrawing one is a document of its own. While it is on main the
controller makes no new deployment of that release — not for a rollout, not as the target of an
automatic rollback — and rollouts naming it stall with the reason ``release_withdrawn``; robots
already running it keep running it and are listed by ``fleetcd get release APP VERSION`` and the
status pages. Deleting the file (a commit) lifts the withdrawal.

A withdrawal only ever withholds software, like ``paused``/``aborted`` on a rollout, so it needs no
approver signatures: it is approved the way every change to main is (review, and the fleet's
commit policy when one is set). Waiting for a signature quorum would delay the stop.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fleetcd.models.base import Document, SafeName, SemVer

WITHDRAWAL_REASON_MAX = 1000  # characters: shown on status pages and in `get releases`


class Withdrawal(Document):
    kind: Literal["Withdrawal"]
    app: SafeName
    version: SemVer
    reason: str = Field(min_length=1, max_length=WITHDRAWAL_REASON_MAX)
