"""Status ingest, step 4 of a reconcile: read robots' status refs, apply them to deployment records."""

from controller.ingest.reports import (
    MovedReport,
    ReportRejected,
    ingest,
    parse_report,
    read_moved_reports,
    read_reports,
)

__all__ = [
    "MovedReport",
    "ReportRejected",
    "ingest",
    "parse_report",
    "read_moved_reports",
    "read_reports",
]
