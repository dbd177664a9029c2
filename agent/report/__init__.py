"""Agent step 6 (report): turn the journals into a report (``status``), build it (``build``, pure),
queue it (``outbox``), decide whether it goes out now (``cadence``, pure), push it (``push``); while a
download or health watch runs, push it with how far that step is, at a bounded rate (``progress``).

The report is a commit of ``status.json`` on ``refs/fleetcd/status/<id>/report``, the one ref a
robot may write; the controller ingests it as untrusted input (``controller.ingest.reports``).
"""

from agent.report.build import add_event, build_report, clip
from agent.report.outbox import Outbox
from agent.report.push import deliver_pending, push_report

__all__ = ["Outbox", "add_event", "build_report", "clip", "deliver_pending", "push_report"]
