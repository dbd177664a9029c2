"""Every error belongs to one group, and the group decides what happens (controller.errors.loop_action,
fleetcd.cli.main.guarded): stall on content, retry on the environment, record and go on for a bug.

A wrong group is a real failure: a transport error read as content would stall a rollout until the
next commit; a content error read as transport would retry a bad commit forever; a bug read as
anything else would be hidden. The exit codes are the public contract of docs/cli.md.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import click
import pytest

from agent.errors import (
    CorruptState,
    DeadlineExceeded,
    DownloadFailed,
    EngineUnavailable,
    StateDirUnwritable,
)
from controller.errors import (
    AuditChainBroken,
    HistoryRewritten,
    IllegalTransition,
    LoopAction,
    StateConflict,
    loop_action,
)
from fleetcd.cli.exitcodes import Exit
from fleetcd.cli.main import guarded
from fleetcd.desired.verify import BundleRejected
from fleetcd.errors import (
    ApplyError,
    InvalidContent,
    PushRejected,
    RefConflict,
    SetupError,
    TransportError,
)
from fleetcd.git.mirror import MirrorBusy
from fleetcd.reasons import Reason
from fleetcd.trust.rootchain import TrustChainRejected


def content_errors() -> list[BaseException]:
    return [
        InvalidContent.at("rollouts/r.yaml", "bad", line=3, field="strategy"),
        HistoryRewritten("refs/heads/main", "a" * 40, "b" * 40),
        AuditChainBroken("audit/2026/05/01.jsonl", 7, "prev is not the hash of the previous line"),
        IllegalTransition(
            "dep-" + "a" * 24, "target_status", "archived", "deployed", "it only moves forward"
        ),
        BundleRejected(Reason.ROLLOUT_MISMATCH, "the bundle names rollout x for y"),
        TrustChainRejected(Reason.TRUST_ROOT_VERSION, "a gap", file="trust/root/3.yaml"),
    ]


def environment_errors() -> list[BaseException]:
    return [
        TransportError("fetch from ssh://git/fleet: connection refused"),
        PushRejected("refs/fleetcd/state", "hook declined"),
        RefConflict("refs/fleetcd/state", "a" * 40, "b" * 40),
        StateConflict("refs/fleetcd/state", "a" * 40, None),
        SetupError("gpg is not installed"),
        MirrorBusy(Path("/var/cache/fleetcd/mirror.git"), "pid 7 on host", 120.0),
        OSError(errno.EIO, "Input/output error"),
        PermissionError(errno.EACCES, "Permission denied"),
        FileNotFoundError(errno.ENOENT, "No such file"),
        TimeoutError("timed out"),
        ConnectionResetError(errno.ECONNRESET, "reset"),
    ]


def bugs() -> list[BaseException]:
    return [
        ValueError("bad value"),
        KeyError("missing"),
        TypeError("NoneType"),
        AssertionError("invariant"),
        RecursionError("deep"),
        ZeroDivisionError("x / 0"),
        ApplyError("a robot-side error raised in the controller"),
        RuntimeError("anything else"),
    ]


@pytest.mark.parametrize("error", content_errors(), ids=lambda e: type(e).__name__)
def test_content_errors_stall(error: BaseException) -> None:
    assert loop_action(error) is LoopAction.STALL


@pytest.mark.parametrize("error", environment_errors(), ids=lambda e: type(e).__name__)
def test_environment_errors_are_retried(error: BaseException) -> None:
    assert loop_action(error) is LoopAction.RETRY


@pytest.mark.parametrize("error", bugs(), ids=lambda e: type(e).__name__)
def test_anything_else_is_a_bug_recorded_and_retried(error: BaseException) -> None:
    assert loop_action(error) is LoopAction.BUG


def test_the_groups_do_not_overlap() -> None:
    groups = [{loop_action(e) for e in errors} for errors in (content_errors(), environment_errors(), bugs())]
    assert groups == [{LoopAction.STALL}, {LoopAction.RETRY}, {LoopAction.BUG}]


def test_error_messages_name_what_went_wrong() -> None:
    rewritten = HistoryRewritten("refs/heads/main", "a" * 40, "b" * 40)
    (diagnostic,) = rewritten.diagnostics
    assert (diagnostic.file, diagnostic.reason) == ("refs/heads/main", Reason.HISTORY_REWRITTEN)
    assert "a" * 40 in diagnostic.message and "b" * 40 in diagnostic.message
    illegal = IllegalTransition("dep-x", "target_status", "archived", "deployed", "it only moves forward")
    assert "'archived' to 'deployed'" in str(illegal) and illegal.diagnostics[0].field == "target_status"
    conflict = StateConflict("refs/fleetcd/state", None, "c" * 40)
    assert "expected no ref" in str(conflict) and "c" * 40 in str(conflict)
    busy = MirrorBusy(Path("/cache/m.git"), "", 2.5)
    assert "holder unknown" in str(busy) and "2.5 s" in str(busy)


# --- the one CLI handler: errors -> documented exit codes ---------------------------------------------


def raising(error: BaseException) -> Callable[[], object]:
    def action() -> object:
        raise error

    return action


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidContent.at("fleet.yaml", "bad"), Exit.INVALID),
        (AuditChainBroken("audit/2026/05/01.jsonl", 1, "edited"), Exit.INVALID),
        (SetupError("gpg missing"), Exit.SETUP),
        (MirrorBusy(Path("/c/m.git"), "pid 1", 120.0), Exit.SETUP),
        (CorruptState(Path("/var/lib/fleetcd/journal/nav.json"), "not JSON"), Exit.SETUP),
        (StateDirUnwritable(Path("/var/lib/fleetcd"), "Read-only file system"), Exit.SETUP),
        (TransportError("connection refused"), Exit.TRANSPORT),
        (PushRejected("refs/x", "declined"), Exit.TRANSPORT),
        (StateConflict("refs/fleetcd/state", None, None), Exit.TRANSPORT),
        (DownloadFailed("503"), Exit.TRANSPORT),
        (DeadlineExceeded("slow"), Exit.TRANSPORT),
        (EngineUnavailable("unix:///run/docker.sock", "connection refused"), Exit.TRANSPORT),
        (click.Abort(), Exit.USAGE),
        (click.UsageError("no such option"), Exit.USAGE),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_each_error_group_gets_its_documented_exit_code(
    error: BaseException, code: Exit, capsys: pytest.CaptureFixture[str]
) -> None:
    assert guarded(raising(error)) == code
    err = capsys.readouterr().err
    assert err.strip(), "every refusal says why on standard error"


# One line per diagnostic, a command's own int, and a bug as 70: tests/test_cli_exit_codes.py.
def test_click_exit_keeps_its_code() -> None:
    assert guarded(raising(click.exceptions.Exit(3))) == 3
