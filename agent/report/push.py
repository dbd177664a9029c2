"""Agent step 6 (report), delivery: commit ``status.json`` on the robot's status ref and push it.

It goes to the robot's status shard (``remote.status`` in agent.yaml), else to the primary
``remote.url``; never to a read replica. There is no fallback to another server: the controller
reads each robot's report only from its own shard (:mod:`fleetcd.shards`), so a report pushed
elsewhere would be ignored; a shard that is down keeps the report in the outbox until it is back.

The robot's bare repository (``paths.repo``, shared with sync) keeps ``refs/fleetcd/status/<id>/report``
at the last report the server *accepted*: each report is one commit whose parent is that one (the
first is a root commit), so the server's history only fast-forwards and a status ACL of ``RW``
(no force) suffices. The local ref moves only after the push succeeded.

Everything goes through the ``git`` CLI (:mod:`fleetcd.git.robotgit`): the commit
(:func:`fleetcd.wire.status_commit`, the format the simulator writes too) is written with
``hash-object``/``mktree``/``commit-tree`` (author and dates fixed, so the same report always makes
the same commit) and pushed with ``git push --porcelain``. A push the server refuses — a
``pre-receive`` hook, gitolite's ACL, a hidden ref — raises :class:`~fleetcd.errors.PushRejected`
naming the ref (read from git's per-ref verdict); it is never a success, and the report stays in
the outbox for the next cycle. A network failure is a
:class:`~fleetcd.errors.TransportError`.

When the server's ref is not an ancestor (the robot was reflashed and lost its repository), the
server's report is fetched, the commit is rebased on it and its ``seq`` lifted above the server's,
since the controller ignores a report whose ``seq`` does not grow. The server's report is read as
untrusted: one that is not a readable report, or whose ``seq`` is beyond
:data:`~fleetcd.reports.MAX_SEQ` (the controller refused it, so there is nothing to beat), is
logged as unreadable and built on with the robot's own ``seq``. A server that serves robots a
namespaced view (docs/git-server.md) does not let the robot fetch its status ref; the push is then
refused with a message saying so (the operator deletes the ref or grants ``RW+``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from agent.report.outbox import Outbox
from agent.sync.desired import Connection, status_connection
from fleetcd.errors import PushRejected
from fleetcd.git.refs import status_ref
from fleetcd.git.robotgit import RobotRepository
from fleetcd.models.agent import AgentConfig
from fleetcd.reports import MAX_INT_DIGITS, MAX_REPORT_BYTES, MAX_SEQ, STATUS_FILE, StatusReport
from fleetcd.wire import status_commit

log = logging.getLogger(__name__)

NON_FAST_FORWARD = "non-fast-forward"  # how fleetcd.git.gitcli.check_push words it
# Rebasing fetches the server's whole report history (a few hundred bytes per report, compressed):
# room for ~100,000 reports, yet a server sending endless data cannot fill the disk.
REBASE_FETCH_MAX_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Pushed:
    """What the server accepted: the commit, and the report it holds (its seq lifted by a rebase)."""

    commit: str
    report: StatusReport


def push_report(config: AgentConfig, repo_dir: Path, report: StatusReport) -> str:
    """Commit ``report`` on top of the last accepted one and push it; returns the pushed commit id."""
    return push_status(config, repo_dir, report).commit


def push_status(config: AgentConfig, repo_dir: Path, report: StatusReport, *, rebase: bool = True) -> Pushed:
    """:func:`push_report`, also returning the report as pushed: after a rebase its seq is the
    server's + 1, and the next report must continue above that, not above the one asked for.

    ``rebase=False`` (a progress report, agent.report.progress): a refused push is an error, never
    rebased onto the server's report, so an old progress report cannot land above a newer one.
    """
    if report.device != config.device:
        raise ValueError(f"report of {report.device!r} cannot be pushed by {config.device!r}")
    repo = RobotRepository(repo_dir)
    conn = status_connection(config)
    ref = status_ref(config.device)
    parent = repo.ref_target(ref)
    new = _commit(repo, report, parent)
    try:
        repo.push(conn.remote(), [f"{new}:{ref}"])
    except PushRejected as exc:
        if not rebase or NON_FAST_FORWARD not in str(exc):
            raise
        parent, report = _rebase_onto_server(repo, conn, ref, report, exc)
        new = _commit(repo, report, parent)
        repo.push(conn.remote(), [f"{new}:{ref}"])
    repo.update_ref(ref, new, parent, message=f"fleetcd-agent: report {report.seq} accepted")
    return Pushed(new, report)


def deliver_pending(config: AgentConfig, repo_dir: Path, outbox: Outbox) -> str | None:
    """Push the outbox's report, if any, and mark it sent; the commit id, or None when nothing waited."""
    report = outbox.pending()
    if report is None:
        return None
    pushed = push_report(config, repo_dir, report)
    outbox.sent(report.seq)
    return pushed


def _commit(repo: RobotRepository, report: StatusReport, parent: str | None) -> str:
    made = status_commit(report)
    return repo.commit_file(
        made.path,
        made.data,
        parent=parent,
        message=made.message,
        author=(made.author_name, made.author_email),
        when=made.when,
    )


def _rebase_onto_server(
    repo: RobotRepository, conn: Connection, ref: str, report: StatusReport, refused: PushRejected
) -> tuple[str, StatusReport]:
    """(the server's commit, the report with a seq above the server's) to commit again."""
    fetched = repo.fetch(conn.remote(), [f"+{ref}:{ref}"], max_bytes=REBASE_FETCH_MAX_BYTES)
    server = repo.ref_target(ref) if fetched else None
    if server is None:
        raise PushRejected(
            ref,
            f"{refused}; the server's {ref} cannot be fetched to build on (a namespaced view hides it): "
            "delete that ref on the server or let the robot force-push it",
        ) from refused
    server_seq = _seq_of(repo, server)
    if server_seq is not None and report.seq <= server_seq:
        report = report.model_copy(update={"seq": server_seq + 1})
    return server, report


def _seq_of(repo: RobotRepository, target: str) -> int | None:
    """The seq of the report in ``target`` when it holds a readable one below :data:`MAX_SEQ`.

    ``target`` came from the server: anything else (not JSON, nested too deep, a seq that is no
    integer or one no agent reaches) is logged as unreadable and gives None, never an exception.
    """
    raw = repo.read_blob(target, STATUS_FILE, MAX_REPORT_BYTES)
    try:
        seq = json.loads(raw or b"", parse_int=_bounded_int).get("seq")
    except (ValueError, AttributeError, RecursionError) as exc:
        log.warning("the server's report %s is unreadable (%s): keeping this robot's own seq", target, exc)
        return None
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < MAX_SEQ:
        shown = repr(seq)[:40]
        log.warning(
            "the server's report %s has seq %s, not one an agent sends (0 to %d): keeping this "
            "robot's own seq",
            target,
            shown,
            MAX_SEQ - 1,
        )
        return None
    return seq


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits.lstrip('-'))} digits")
    return int(digits)
