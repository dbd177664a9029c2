"""``fleetcd withdraw APP@VERSION --reason TEXT``: write ``withdrawals/<app>/<version>.yaml`` and commit it.

The file a person would write (fleetcd/models/withdrawal.py), validated in memory first: a
release that does not exist, or anything else that would add an error, is refused with the
diagnostic. Withdrawing it again writes nothing. The commit message names the rollouts the
controller will stall, so reviewers of the pull request see what stops. A withdrawal is in force
only once the fleet's approvers sign it (:mod:`fleetcd.validation.withdrawals`): the message and an
``APPROVALS NEEDED`` note say how many, and how (``fleetcd approve withdrawals/<app>/<version>.yaml``).
"""

from __future__ import annotations

import json
from pathlib import Path

from controller.ops.local import Change, check_change, finish, open_work_tree
from fleetcd.layout import withdrawal_path
from fleetcd.models.withdrawal import WITHDRAWAL_REASON_MAX
from fleetcd.validation.withdrawals import required_approvals

HEADER = "# yaml-language-server: $schema=https://fleetcd.dev/schemas/v1/withdrawal.json\n"


def withdrawal_text(app: str, version: str, reason: str) -> str:
    # JSON string quoting is valid YAML and keeps any reason text one safe scalar.
    return (
        f"{HEADER}# Once approved, no robot gets {app} {version} anew while this file is on main.\n"
        f"apiVersion: fleetcd.dev/v1\nkind: Withdrawal\napp: {app}\nversion: {json.dumps(version)}\n"
        f"reason: {json.dumps(reason, ensure_ascii=False)}\n"
    )


def withdraw(
    start: Path, app: str, version: str, reason: str, *, commit: bool = True, author: str | None = None
) -> Change:
    """Withdraw release ``app`` ``version`` with ``reason``; see the module docstring."""
    tree = open_work_tree(start)
    path = withdrawal_path(app, version)
    subject = f"Withdraw {app} {version}"
    if path in tree.files:
        return Change(path, subject, False, notes=(f"{path} already withdraws it",))
    reason = " ".join(reason.split())[:WITHDRAWAL_REASON_MAX]  # one line; the model bounds it too
    changes: dict[str, bytes | None] = {path: withdrawal_text(app, version, reason).encode("utf-8")}
    spec = check_change(tree, changes, path).after.spec
    stalled = sorted(
        name
        for name, entry in spec.rollouts.items()
        if (entry.doc.model.app, entry.doc.model.release) == (app, version) and not entry.doc.model.aborted
    )
    committer = tree.prepare_commit(author) if commit else None
    tree.write(changes)
    stops = ", ".join(stalled) if stalled else "none"
    root = spec.trust_root
    required = required_approvals(root) if root is not None else 0
    when = (
        f"once {required} approvers have signed it (fleetcd approve {path}); until then the "
        "controller ignores it"
        if required
        else "from this commit on"
    )
    message = (
        f"{subject}\n\n"
        f"Reason: {reason}\n\n"
        f"The controller makes no new deployment of {app} {version} {when}. Rollouts "
        f"naming it stall (release_withdrawn): {stops}. Robots running it keep it until a rollout "
        f"moves them (fleetcd get release {app} {version} lists them). Delete {path} and {path}.d/ "
        "to lift.\n"
    )
    notes = (
        (
            f"APPROVALS NEEDED: 0 of {required} approvals verified. The withdrawal is not in force "
            f"until approvers run `fleetcd approve {path}` and the approvals are on main.",
        )
        if required
        else ()
    )
    return finish(tree, path, message, author=committer, notes=notes)
