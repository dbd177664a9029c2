"""The write step's second half: status pages and receipts of generations that just finished.

Run only when the reconcile changed something, so the pages' "generated at" never makes an idle
reconcile write a commit. A receipt quotes each wave's gate settings (minimum reported, failure
threshold, soak, manual promotion) next to its observed numbers: the waves the plan step planned
from the same main, handed over in ``planned`` (never planned twice).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from controller.pages import build_view, render_status_html, render_status_md
from controller.receipts.build import approvals_from_state, build_receipt
from controller.receipts.render import receipt_outputs
from controller.reconcile.rollouts import FleetContext, PlannedRollout
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.statebranch import StateSnapshot
from controller.state.layout import STATUS_HTML, STATUS_MD, receipt_files
from controller.state.model import DeviceFile, RolloutPhase, RolloutState
from fleetcd.planning.waves import PlannedWave
from fleetcd.trust.gpg import Signer

FINISHED = frozenset({RolloutPhase.COMPLETED, RolloutPhase.HALTED, RolloutPhase.ABORTED})


def pages_and_receipts(
    ctx: FleetContext,
    snapshot: StateSnapshot,
    rollouts: Mapping[str, RolloutState],
    devices: Mapping[str, DeviceFile],
    settings: ControllerSettings,
    now: datetime,
    main: str,
    planned: Mapping[str, PlannedRollout],
) -> dict[str, bytes | None]:
    memo = settings.cache.pages if settings.cache is not None else None
    cohorts = {k: v.model for k, v in ctx.spec.cohorts.items()}
    withdrawals = {key: doc.model.reason for key, doc in ctx.spec.withdrawals.items()}
    view = build_view(
        list(rollouts.values()),
        devices,
        cohorts,
        ctx.devices,
        now,
        main,
        fleet=ctx.fleet.name,
        withdrawals=withdrawals,
        description=ctx.fleet.description,
        config_of=lambda app, device: ctx.device_config(app, device).sha256,
        members=ctx.members,
        memo=memo,
        config_source=ctx,
    )
    out: dict[str, bytes | None] = {
        STATUS_MD: render_status_md(view).encode("utf-8"),
        STATUS_HTML: render_status_html(view, memo).encode("utf-8"),
    }
    due = [
        s
        for s in rollouts.values()
        if s.phase in FINISHED and receipt_files(s.name, s.generation)[0] not in snapshot.files
    ]
    if not due:
        return out
    records = {d: f.records for d, f in devices.items()}
    with Signer(settings.gnupghome) as signer:
        fingerprint = ctx.signing_key(signer.secret_fingerprints())
        for state in due:
            release = ctx.spec.release(state.app, state.version)
            if release is None:
                continue  # the release file left main; the receipt waits for the audit instead
            mine = {
                d: [r for r in rs if r.rollout == state.name and r.generation == state.generation]
                for d, rs in records.items()
            }
            receipt = build_receipt(
                state,
                {d: rs for d, rs in mine.items() if rs},
                release.doc.model,
                release.doc.path,
                approvals_from_state(state),
                now,
                planned=_planned(state, planned),
            )
            out.update(receipt_outputs(receipt, lambda data: signer.sign_detached(data, fingerprint)))
    return out


def _planned(state: RolloutState, planned: Mapping[str, PlannedRollout]) -> list[PlannedWave]:
    """``state``'s waves as planned from main; none when main's rollout is another generation
    (its gates may differ, and a receipt never quotes another generation's numbers)."""
    found = planned.get(state.name)
    if found is None or found.fingerprint != state.generation_fingerprint:
        return []
    return found.waves
