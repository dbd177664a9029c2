"""``fleetcd demo``: a guided tour on a throwaway fleet repository, using the real commands.

Today the tour covers the foundation: create a fleet from the template, generate development keys,
sign a release, approve a rollout, validate, plan against the previous commit, and show that a
published release cannot be edited and that a hostile file is refused with a clear error. Every
step runs the same ``fleetcd`` command a person would type, in-process, against a real git
repository and real GnuPG. The controller and agents join the tour as they land.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from fleetcd.cli.exitcodes import Exit
from fleetcd.git.worktree import commit_all

AUTHOR = "fleetcd demo <demo@fleetcd.invalid>"
RELEASE = "releases/navstack/1.0.0.yaml"
ROLLOUT = "rollouts/navstack.yaml"
BILLION_LAUGHS = b'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'


@dataclass
class Tour:
    """Runs commands against one fleet repository and checks each one ends as expected."""

    root: Path
    invoke: Callable[[Sequence[str]], int]
    step_no: int = 0

    def step(self, title: str) -> None:
        self.step_no += 1
        click.secho(f"\n[{self.step_no}] {title}", bold=True)

    def run(self, args: Sequence[str], expect: Exit) -> None:
        click.secho(f"$ fleetcd {' '.join(args)}", fg="cyan")
        code = self.invoke(list(args))
        if code != expect:
            raise click.ClickException(f"`fleetcd {' '.join(args)}` exited {code}, expected {int(expect)}")

    def commit(self, message: str) -> None:
        commit_all(self.root, message, AUTHOR)
        click.echo(f"(committed: {message})")


def run_demo(invoke: Callable[[Sequence[str]], int], keep: Path | None) -> None:
    """Tell the story; the fleet lives in ``keep`` (kept) or a temporary directory (removed)."""
    workdir = Path(tempfile.mkdtemp(prefix="fleetcd-demo-"))
    root = keep if keep is not None else workdir / "fleet"
    gnupghome = workdir / "gnupg"  # short path: gpg-agent sockets have a ~108-byte limit
    repo = ["--repo", str(root)]
    tour = Tour(root=root, invoke=invoke)
    try:
        tour.step("Create a fleet repository from the template")
        tour.run(["init", str(root), *(["--force"] if keep is not None and keep.exists() else [])], Exit.OK)
        rollout = root / ROLLOUT
        rollout_text = rollout.read_bytes()
        rollout.unlink()  # the first commit has robots and a release, but nothing rolling out yet
        tour.commit("Start the fleet from the template")
        tour.step("Generate development keys: a release signer, two approvers, the controller")
        tour.run(["keys", "generate", *repo, "--gnupghome", str(gnupghome)], Exit.OK)
        tour.step("The release is not signed yet, so the fleet does not validate")
        tour.run(["validate", *repo], Exit.INVALID)
        tour.step("Sign the release and approve the rollout (production needs two approvers)")
        tour.run(["sign", str(root / RELEASE), "--gnupghome", str(gnupghome)], Exit.OK)
        rollout.write_bytes(rollout_text)
        tour.run(["approve", str(root / ROLLOUT), "--all-approvers", "--gnupghome", str(gnupghome)], Exit.OK)
        tour.run(["validate", *repo], Exit.OK)
        tour.commit("Publish navstack 1.0.0 and roll it out")
        tour.step("Plan the rollout against the first commit, as a pull request would show it")
        tour.run(["plan", *repo, "--base", "HEAD~1"], Exit.CHANGES)
        tour.step("The controller turns the merged commit into per-robot desired state and an audit log")
        ctl = ["--repo", str(root), "--cache", str(workdir / "cache")]
        tour.run(["controller", "reconcile", "--once", *ctl, "--gnupghome", str(gnupghome)], Exit.OK)
        tour.run(["audit", "verify", *ctl], Exit.OK)
        tour.step("A published release is immutable: editing it is caught against --base")
        release = root / RELEASE
        original = release.read_bytes()
        release.write_bytes(original + b"# a quiet edit after publication\n")
        tour.run(["validate", *repo, "--base", "HEAD"], Exit.INVALID)
        release.write_bytes(original)
        tour.step("Hostile input is refused with file, line and reason, never a traceback")
        hostile = root / "devices" / "amr-evil.yaml"
        hostile.write_bytes(
            b'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
        )
        tour.run(["validate", *repo], Exit.INVALID)
        hostile.unlink()
        tour.run(["validate", *repo], Exit.OK)
        click.secho("\nDemo complete.", fg="green", bold=True)
        if keep is not None:
            click.echo(f"The fleet repository is kept at {root}; development keys in {gnupghome}.")
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
