"""Agent steps 1–2 (sync, verify): fetch only this robot's desired state (``desired``, which picks
between its two names with ``layout``), pace the polls (``backoff``), and accept what
:mod:`agent.trustcheck` verified, falling back to the last accepted commit (``accept``).

``desired`` trusts no byte it fetches; only ``accept`` hands a verified bundle to converge.
"""

from agent.sync.backoff import Backoff
from agent.sync.desired import Connection, connection_of, fetch_desired, read_desired

__all__ = ["Backoff", "Connection", "connection_of", "fetch_desired", "read_desired"]
