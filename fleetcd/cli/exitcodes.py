"""Exit codes of every ``fleetcd`` command (documented in docs/cli.md); one handler maps errors to them."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0  # success; for `plan`: no changes
    INVALID = 1  # repository content is invalid (validation errors, bad signatures, missing approvals)
    USAGE = 2  # wrong command-line usage (click's own code)
    CHANGES = 3  # `plan` only: the plan has changes to apply
    SETUP = 4  # local environment cannot do the job (gpg missing, not a repository, bad ref)
    TRANSPORT = 5  # git or network failure; retrying may help
    INTERNAL = 70  # a bug in fleetcd (EX_SOFTWARE)
