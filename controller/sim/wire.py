"""A virtual robot's git traffic: the agent's sync fetch and its status push, over the real transport.

Each robot owns a bare repository (``<workdir>/robots/<id>.git``). A poll fetches only the robot's
own desired-state ref with the git CLI over protocol v2 (:func:`fleetcd.git.remote.fetch_own_ref_cli`:
the server lists that one ref, so a poll costs the same at 10 robots as at 10,000) under the name the
server shows it: its physical ``refs/namespaces/<id>/...`` name on a plain repository with the
namespaced layout, ``refs/fleetcd/desired/<id>`` with the flat one. The four files are read with
the agent's size caps and the report commit is built as the agent builds it: both come from the
shared wire format, :mod:`fleetcd.wire`. A report is one commit on top of the last accepted one, pushed to
``refs/fleetcd/status/<id>/report`` with :func:`fleetcd.git.remote.push` (``git push`` to a local
repository, so the server's hooks run; libgit2 elsewhere); the local ref moves only once the server
accepted it, as the agent's does. Robot side only: imports ``fleetcd`` alone.
"""

from __future__ import annotations

from pathlib import Path

from fleetcd.git.objects import Identity, blob_size, commit, read_blob, ref_target, update_refs, write_tree
from fleetcd.git.refs import desired_ref, namespaced, status_ref
from fleetcd.git.remote import fetch, fetch_own_ref_cli, push
from fleetcd.git.repo import Oid, Repository, oid, open_or_init_bare
from fleetcd.reports import StatusReport
from fleetcd.wire import DESIRED_FILE_CAPS, DesiredFiles, check_desired_file, desired_files, status_commit

SIM_SENDER = "fleetcd sim"  # its commits' author is "fleetcd sim <id>"; the agent's "fleetcd-agent <id>"


class RobotLink:
    """One robot's connection to the fleet repository, through its own bare repository."""

    def __init__(
        self, device: str, url: str, git_dir: Path, *, namespaces: bool, push_url: str | None = None
    ) -> None:
        self.device = device
        self.url = url
        self.push_url = push_url or url  # the same repository, possibly behind another server process
        self.git_dir = git_dir
        flat = desired_ref(device)
        self.desired_ref = namespaced(device, flat) if namespaces else flat
        self.status_ref = status_ref(device)
        self._repo: Repository | None = None
        self.adopt_server_report = False  # the server holds reports from an earlier run: build on them

    @property
    def repo(self) -> Repository:
        if self._repo is None:
            self._repo = open_or_init_bare(self.git_dir)
        return self._repo

    def fetch_desired(self) -> str | None:
        """The commit the server has for this robot (fetched into its repository), or None."""
        self.repo  # noqa: B018 - the CLI fetch needs the repository to exist
        target, _received = fetch_own_ref_cli(self.url, self.desired_ref, git_dir=self.git_dir)
        return None if target is None else str(target)

    def read_desired(self, commit_id: str) -> DesiredFiles:
        """The four files of a fetched desired-state commit, each size-checked from its header first."""
        data: dict[str, bytes] = {}
        target = oid(commit_id)
        for name, cap in DESIRED_FILE_CAPS:
            check_desired_file(commit_id, name, blob_size(self.repo, target, name), cap)
            data[name] = read_blob(self.repo, target, name) or b""
        return desired_files(commit_id, data)

    def push_report(self, report: StatusReport) -> str:
        """Commit ``report`` on the last accepted one and push it; returns the pushed commit id."""
        repo = self.repo
        if self.adopt_server_report and ref_target(repo, self.status_ref) is None:
            # A fresh robot repository but reports on the server (a rehearsal resumed): build on them.
            fetch(repo, self.push_url, [f"+{self.status_ref}:{self.status_ref}"])
            self.adopt_server_report = False
        parent = ref_target(repo, self.status_ref)
        new = self._commit(repo, report, parent)
        push(repo, self.push_url, [f"{new}:{self.status_ref}"])
        update_refs(repo, {self.status_ref: (parent, new)}, message=f"sim: report {report.seq} accepted")
        return str(new)

    def _commit(self, repo: Repository, report: StatusReport, parent: Oid | None) -> Oid:
        made = status_commit(report, sender=SIM_SENDER)
        tree = write_tree(repo, {made.path: made.data})
        author = Identity(made.author_name, made.author_email)
        parents = [parent] if parent is not None else []
        return commit(repo, None, tree, made.message, parents, author, made.when)
