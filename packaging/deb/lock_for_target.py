"""dev/build-deb's helper: the entries of a hashed lock (requirements/agent.txt) that one target robot
installs, with their environment markers evaluated for that robot and dropped.

``pip download --python-version X.Y --platform ...`` picks wheels for the target but evaluates
markers against the interpreter running pip: on the build machine's 3.11 it would skip
``exceptiongroup ; python_full_version < '3.11'`` for a 3.10 robot and take both pins of a package
the lock splits by Python version. So the build downloads from this file instead, and installs on
the robot from the untouched lock (pip there evaluates the markers with the real interpreter; a
mismatch is a missing wheel and the install fails loudly, offline).

    python lock_for_target.py requirements/agent.txt --python-version 3.10 --arch arm64 > target.txt
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from packaging.markers import Marker

# Debian architecture -> the platform_machine a Python on it reports.
MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}


def target_environment(python_version: str, arch: str) -> dict[str, str]:
    """Marker variables of CPython ``python_version`` (X.Y) on Linux on Debian architecture ``arch``."""
    full = f"{python_version}.0"
    return {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": MACHINES[arch],
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full,
        "python_version": python_version,
        "sys_platform": "linux",
    }


def entries(lock_text: str) -> Iterator[str]:
    """Each requirement of a pip requirements file, continuation lines joined, comments dropped."""
    parts: list[str] = []
    for raw in lock_text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            yield " ".join(parts)
            parts = []
    if parts:
        yield " ".join(parts)


def select(lock_text: str, environment: dict[str, str]) -> list[str]:
    """The lock's entries that apply in ``environment``, each as ``name==version --hash=...``."""
    selected = []
    for entry in entries(lock_text):
        requirement, _, hashes = entry.partition(" --hash=")
        pin, _, marker = requirement.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate(environment):
            continue
        selected.append(f"{pin.strip()} --hash={hashes}" if hashes else pin.strip())
    return selected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("lock", type=Path)
    parser.add_argument("--python-version", required=True, help="X.Y, e.g. 3.10")
    parser.add_argument("--arch", required=True, choices=sorted(MACHINES))
    args = parser.parse_args(argv)
    environment = target_environment(args.python_version, args.arch)
    for line in select(args.lock.read_text(encoding="utf-8"), environment):
        sys.stdout.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
