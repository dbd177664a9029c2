"""A release's ``requires`` at dispatch: may this robot switch to the rollout's release now? (pure)

What a robot *runs*, as far as the controller knows, is the version of its newest deployment of
each app that succeeded (a deploy, or a rollback that brought the old version back); a robot with
no such record runs nothing of that app. A robot is held, and its wave waits with the reason, when:

* ``requirement_unmet`` — the release requires an app (``requires: [{app, version}]``) the robot
  does not run at a version in range. It gets its deployment on the first tick after it runs one:
  the required app's rollout orders the dependent one.
* ``required_by_running_app`` — another app the robot runs requires this app in a range the new
  release is outside of (a downgrade below a dependent's bound). Move the dependent app first.

Only new deployments and the blue/green switch are held. Automatic rollbacks
(:mod:`controller.engine.rollback`) never are: a release that failed its gate is worse than an unmet
requirement. No I/O, no clock.
"""

from __future__ import annotations

from controller.engine.inputs import EngineInput
from controller.records.model import Outcome, outcome
from fleetcd.models.requirement import broken_dependent, first_unmet
from fleetcd.reasons import HoldReason


def running_version(inp: EngineInput, device: str, app: str) -> str | None:
    """The version of ``app`` the robot last deployed successfully (None: none recorded)."""
    data = inp.device_files.get(device)
    if data is None:
        return None
    done = [r for r in data.records if r.app == app and outcome(r) is Outcome.SUCCEEDED]
    newest = max(done, key=lambda r: (r.created_at, r.updated_at, r.generation), default=None)
    return None if newest is None else newest.version


def requirement_hold(inp: EngineInput, device: str) -> HoldReason | None:
    """Why ``device`` may not switch to the rollout's release now; None when it may."""
    if not inp.requires and not inp.required_by:
        return None

    def running(app: str) -> str | None:
        return running_version(inp, device, app)

    if first_unmet(inp.requires, running) is not None:
        return HoldReason.REQUIREMENT_UNMET
    if broken_dependent(inp.rollout.release, inp.required_by, running) is not None:
        return HoldReason.REQUIRED_BY_RUNNING_APP
    return None
