"""Agent step 1 (sync): fetch only this robot's desired state (``desired``) and pace the polls (``backoff``).

What is fetched is verified next by :mod:`agent.trustcheck`; nothing here trusts a byte of it.
"""

from agent.sync.backoff import Backoff
from agent.sync.desired import Connection, DesiredFiles, connection_of, fetch_desired, read_desired

__all__ = ["Backoff", "Connection", "DesiredFiles", "connection_of", "fetch_desired", "read_desired"]
