"""``withdrawals/<app>/<version>.yaml`` (kind Withdrawal): a published release no robot may get anew.

Releases are immutable files, so withdrawing one is a document of its own. While it is on main the
controller makes no new deployment of that release — not for a rollout, not as the target of an
automatic rollback — and rollouts naming it stall with the reason ``release_withdrawn``; robots
already running it keep running it and are listed by ``fleetcd get release APP VERSION`` and the
status pages. Deleting the file (a commit) lifts the withdrawal.

A withdrawal is in force only once a threshold of the fleet's approvers signed it
(``withdrawals/<app>/<version>.yaml.d/<FPR>.asc``, :mod:`fleetcd.validation.withdrawals`): it also
removes the release as a rollback target, so whoever can commit to main must not be able to
withdraw the stable release alone. An unapproved one withdraws nothing and is reported.
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
