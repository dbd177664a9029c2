"""Status pages on the state branch: ``STATUS.md`` and ``status.html`` (pure rendering).

Step 6 (write) of the reconcile calls :func:`build_view` on the state it is about to commit, then
both renderers on that view, and writes the results to ``STATUS_MD`` / ``STATUS_HTML``
(:mod:`controller.state.layout`). Nothing here does I/O or reads the clock.
"""

from controller.pages.html import render_status_html
from controller.pages.markdown import render_status_md
from controller.pages.summary import FleetView, RobotState, build_view

__all__ = ["FleetView", "RobotState", "build_view", "render_status_html", "render_status_md"]
