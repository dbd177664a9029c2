"""One rollout per app per robot: two live rollouts of one app must not both deliver to a robot.

A robot that two rollouts would both update has no single desired version, and each wave's
statistics would count it twice. Aborted rollouts own nobody; paused ones still do (see
:mod:`fleetcd.validation.context`). Each rollout involved gets the error, naming the robots and the
other rollouts, so the annotation shows up on every file a reviewer might change.
"""

from __future__ import annotations

from collections.abc import Iterator

from fleetcd.errors import Diagnostic
from fleetcd.reasons import Reason
from fleetcd.validation.context import Context, at, robots_phrase


def check(ctx: Context) -> Iterator[Diagnostic]:
    shared: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (app, device), deliveries in ctx.deliveries.items():
        if len(deliveries) > 1:
            shared.setdefault((app, tuple(d.rollout for d in deliveries)), []).append(device)
    for (app, rollouts), robots in sorted(shared.items()):
        for name in rollouts:
            others = ", ".join(repr(r) for r in rollouts if r != name)
            yield at(
                ctx.spec.rollouts[name].doc,
                ("targets",),
                f"{robots_phrase(sorted(robots))} {'is' if len(robots) == 1 else 'are'} also targeted by "
                f"rollout {others} of app {app!r}; "
                "a robot takes one rollout per app (retarget, or abort the older one)",
                Reason.ROLLOUT_OVERLAP,
            )
