"""systemd's notify protocol, in the standard library: READY, WATCHDOG pings and STATUS lines.

The unit (``agent/fleetcd-agent.service``) is ``Type=notify`` with ``WatchdogSec=``: systemd starts
counting the agent as up only after ``READY=1``, and restarts it when the pings stop (a hung git
fetch or a deadlocked loop). Outside systemd ``NOTIFY_SOCKET`` is unset and every call is a no-op,
so ``fleetcd-agent run`` behaves the same in a terminal, a container or a test.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"
STATUS_MAX_CHARS = 200  # systemctl status shows one line; keep the datagram small


def _address(environ: Mapping[str, str]) -> str | None:
    path = environ.get(NOTIFY_SOCKET_ENV, "")
    if not path:
        return None
    if path.startswith("@"):  # abstract namespace socket: leading NUL byte on the wire
        return "\0" + path[1:]
    if not path.startswith("/"):
        return None  # systemd only ever passes absolute or abstract addresses
    return path


def notify(*, environ: Mapping[str, str] | None = None, **fields: str | int) -> bool:
    """Send ``KEY=value`` lines (``notify(READY=1, STATUS="synced")``); False when not under systemd.

    A send error is swallowed and reported as False: losing a status line must never stop the
    agent, and a lost watchdog ping is exactly what the watchdog exists to notice.
    """
    env = os.environ if environ is None else environ
    address = _address(env)
    if address is None or not fields:
        return False
    lines = []
    for key, value in fields.items():
        text = str(value).replace("\n", " ")
        lines.append(f"{key}={text[:STATUS_MAX_CHARS] if key == 'STATUS' else text}")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode("utf-8"))
    except OSError:
        return False
    return True


def watchdog_interval_seconds(environ: Mapping[str, str] | None = None) -> float | None:
    """How often to ping: half of ``WatchdogSec`` (systemd's advice), None when no watchdog is set."""
    env = os.environ if environ is None else environ
    usec = env.get(WATCHDOG_USEC_ENV, "")
    pid = env.get(WATCHDOG_PID_ENV, "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # the watchdog is meant for another process (e.g. our parent)
    return int(usec) / 1_000_000 / 2
