"""The real ``fleetcd`` command group run in this process, as an operator's shell would run it.

:func:`fleetcd` goes through :func:`fleetcd.cli.main.run`, the one error handler, so a test sees
the exit code, standard output and standard error a person or CI job would see. For what needs a
process of its own (an environment read once at start, a kill), tests start ``fleetcd`` with
``subprocess`` instead.
"""

from __future__ import annotations

import pytest

from controller.cli import build
from fleetcd.cli.main import run


def fleetcd(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``fleetcd ARGS``: (exit code, stdout, stderr)."""
    code = run(build(), list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
