"""Status ingest, step 4 of a reconcile: read robots' status refs, apply them to deployment records."""

from controller.ingest.reports import ReportRejected, ingest, parse_report, read_reports

__all__ = ["ReportRejected", "ingest", "parse_report", "read_reports"]
