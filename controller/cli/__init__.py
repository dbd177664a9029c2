"""The ``fleetcd`` console script: every command is defined in this package, one module per group.

Thin, as pre-commit's ``main.py``: each command builds settings from its options and calls one
library function. Errors become the documented exit codes in one place,
:func:`fleetcd.cli.main.run` (shared with ``fleetcd-agent``; docs/cli.md). The commands needing only
the shared core (init, keys, sign, approve, validate, plan) live here too, so ``fleetcd`` itself
never imports a role.
"""

from __future__ import annotations

import sys

import click

from fleetcd import __version__
from fleetcd.cli.exitcodes import Exit
from fleetcd.cli.main import run


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fleetcd")
def cli() -> None:
    """fleetcd: GitOps releases for robot fleets.

    Exit codes: 0 ok (plan: no changes), 1 invalid content, 2 usage, 3 plan has changes,
    4 local setup problem (gpg, repository, ref), 5 git/network failure, 70 internal error.
    """


def build() -> click.Group:
    """The ``fleetcd`` group with every command; the modules load here, not when the package does."""
    from controller.cli import (
        approve,
        audit,
        demo,
        edit,
        init,
        keys,
        plan,
        read,
        reconcile,
        robot,
        sign,
        sim,
        validate,
    )

    for command in (
        init.init_command,
        keys.keys_group,
        sign.sign_command,
        approve.approve_command,
        validate.validate_command,
        plan.plan_command,
        demo.demo_command,
        reconcile.controller_group,
        audit.audit_group,
        read.get_group,
        read.history_command,
        read.receipt_command,
        edit.pause_command,
        edit.resume_command,
        edit.rollback_command,
        edit.deploy_command,
        edit.withdraw_command,
        sim.sim_command,
        robot.robot_group,
    ):
        cli.add_command(command)
    return cli


# The controller's git needs pygit2 >= 1.21 (Odb.read_header; no crash in PackBuilder), whose
# wheels start at Python 3.11. Robots on 3.10 run fleetcd-agent, which needs no pygit2.
OPERATOR_MIN_PYTHON = (3, 11)


def main(argv: list[str] | None = None) -> None:
    if sys.version_info < OPERATOR_MIN_PYTHON:
        sys.stderr.write(
            f"error: fleetcd (operator CLI and controller) needs Python 3.11 or newer; this is "
            f"{sys.version.split()[0]}. Robots on Python 3.10 run fleetcd-agent (docs/agent.md).\n"
        )
        sys.exit(Exit.SETUP)
    sys.exit(run(build(), argv))
