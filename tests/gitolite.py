"""A real gitolite3 behind a real OpenSSH sshd on loopback, set up exactly as docs/git-server.md says.

The ACL block of ``conf/gitolite.conf``, the ``.gitolite.rc`` lines, the ``FleetcdNamespace``
``PRE_GIT`` trigger and the repository's "Server settings worth setting" are read from
docs/git-server.md itself, so the page is what gets tested. Each
robot (and the controller, ``fleetcd-controller``) gets its own SSH key; gitolite knows the key's
owner by its file name in ``keydir/`` and writes the ``command="gitolite-shell <user>"`` lines of
``authorized_keys``.

Throwaway and user-less: gitolite lives in a temporary HOME; sshd (root, so it can run sessions)
lets the keys log in as the current user and sets ``HOME`` to that directory (``SetEnv``), so no
system account is created or changed. ::

    with Gitolite(tmp_path / "gl", robots=["amr-001", "amr-002"]) as server:
        server.load(local_bare_repo)           # server-side copy of every ref, no hooks run
        url, key = server.url(), server.key("amr-001")
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.gitrepos import (
    GIT_ENV,
    _current_user,
    _Server,
    free_port,
    make_host_key,
    run_sshd,
    ssh_keygen,
    sshd_binary,
)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "git-server.md"
CONTROLLER = "fleetcd-controller"
ADMIN = "admin"
REPO = "fleet"
MIN_GIT = (2, 31)  # the trigger sets receive.hideRefs through GIT_CONFIG_COUNT


class GitoliteUnavailable(RuntimeError):
    """gitolite, sshd or a recent enough git is missing: the caller skips (or fails under CI)."""


def _doc_block(after: str, language: str) -> str:
    """The first fenced ``language`` block following the line containing ``after`` in the doc."""
    text = DOC.read_text(encoding="utf-8")
    found = re.search(re.escape(after) + r".*?```" + language + r"\n(.*?)```", text, re.S)
    if found is None:
        raise AssertionError(f"{DOC}: no ```{language} block after {after!r}")
    return found.group(1)


def trigger_source() -> str:
    return _doc_block("`~/local/lib/Gitolite/Triggers/FleetcdNamespace.pm`:", "perl")


def rc_lines() -> str:
    return _doc_block("`~/.gitolite.rc` (inside `%RC`):", "perl")


def server_settings(repo: str = REPO) -> list[list[str]]:
    """The ``git config`` commands of the doc's "Server settings worth setting", as argv lists, for
    the repository ``repo`` (the page writes them for ``fleet``; a status shard gets the same)."""
    commands = []
    for line in _doc_block("### Server settings worth setting", "").splitlines():
        command = line.split("#", 1)[0].strip()
        if not command:
            continue
        argv = shlex.split(command)
        if argv[:4] != ["git", "config", "--file", f"repositories/{REPO}.git/config"]:
            raise AssertionError(f"{DOC}: not a git config of the fleet repository: {line!r}")
        commands.append([*argv[:3], f"repositories/{repo}.git/config", *argv[4:]])
    return commands


def fleet_acl(robots: Sequence[str], repos: Sequence[str] = (REPO,)) -> str:
    """The doc's ``repo fleet`` block, once for each of ``repos`` (an operator copying it for a
    status shard under another name), with a ``@robots`` line for ``robots``."""
    conf = _doc_block("`conf/gitolite.conf`:", "")
    block = conf[conf.index(f"repo {REPO}\n") + len(f"repo {REPO}\n") :]
    blocks = "\n".join(f"repo {repo}\n{block}" for repo in repos)
    return f"@robots = {' '.join(robots)}\n\n{blocks}"


def _git_version() -> tuple[int, ...]:
    out = subprocess.run(["git", "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


class Gitolite(_Server):
    """gitolite3 with the fleet repository, reachable as ``ssh://<user>@127.0.0.1:<port>/fleet``."""

    def __init__(self, workdir: Path, robots: Sequence[str], repos: Sequence[str] = (REPO,)) -> None:
        self.dir = workdir
        self.repos = list(repos)
        self.home = workdir / "home"
        self.keys_dir = workdir / "keys"
        self.robots = list(robots)
        self.user = os.environ.get("USER") or _current_user()
        self.port = 0
        self.host_key = workdir / "ssh_host_ed25519_key"
        self.host_fingerprint = ""

    # --- setup --------------------------------------------------------------------------------------
    def __enter__(self) -> Gitolite:
        gitolite, sshd = shutil.which("gitolite"), sshd_binary()
        if gitolite is None:
            raise GitoliteUnavailable("gitolite is not installed (Debian package gitolite3)")
        if sshd is None:
            raise GitoliteUnavailable("sshd is not installed (Debian package openssh-server)")
        if _git_version() < MIN_GIT:
            raise GitoliteUnavailable(f"git {_git_version()} is older than {MIN_GIT}")
        self.home.mkdir(parents=True)
        self.keys_dir.mkdir()
        for user in [ADMIN, CONTROLLER, *self.robots]:
            ssh_keygen(self.keys_dir / user, user)
        shutil.copyfile(self.keys_dir / f"{ADMIN}.pub", self.home / f"{ADMIN}.pub")
        self.gitolite("setup", "-pk", f"{ADMIN}.pub")
        self._configure()
        self._start_sshd(sshd)
        return self

    def _configure(self) -> None:
        rc = self.home / ".gitolite.rc"
        text = rc.read_text(encoding="utf-8")
        rc.write_text(text.replace("%RC = (\n", "%RC = (\n" + rc_lines(), 1), encoding="utf-8")
        triggers = self.home / "local" / "lib" / "Gitolite" / "Triggers"
        triggers.mkdir(parents=True)
        (triggers / "FleetcdNamespace.pm").write_text(trigger_source(), encoding="utf-8")
        admin = self.home / ".gitolite"
        conf = admin / "conf" / "gitolite.conf"
        conf.write_text(
            conf.read_text(encoding="utf-8") + "\n" + fleet_acl(self.robots, self.repos), encoding="utf-8"
        )
        for user in [CONTROLLER, *self.robots]:
            shutil.copyfile(self.keys_dir / f"{user}.pub", admin / "keydir" / f"{user}.pub")
        # Editing ~/.gitolite directly and re-running setup is gitolite's documented way around the
        # admin repository: compile the conf, create repositories, rewrite authorized_keys.
        self.gitolite("setup")
        for repo in self.repos:  # each repository's settings, as the page says to set them
            for argv in server_settings(repo):
                subprocess.run(argv, cwd=self.home, check=True)

    def _start_sshd(self, binary: str) -> None:
        self.host_fingerprint = make_host_key(self.host_key)
        self.port = free_port()
        self.process = run_sshd(
            binary,
            self.dir,
            self.port,
            self.host_key,
            self.home / ".ssh" / "authorized_keys",  # written by gitolite
            root_login="forced-commands-only",  # every key has gitolite's command="..."
            extra=[f"SetEnv HOME={self.home}"],  # overrides the login user's home: gitolite finds its rc here
            what="sshd for gitolite",
        )

    # --- use ----------------------------------------------------------------------------------------
    def gitolite(self, *args: str) -> str:
        """Run the gitolite command as the server does (its HOME); returns stdout."""
        done = subprocess.run(
            ["gitolite", *args],
            cwd=self.home,
            env={**os.environ, **GIT_ENV, "HOME": str(self.home)},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"gitolite {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done.stdout

    def url(self, repo: str = REPO) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}/{repo}"

    def key(self, user: str) -> Path:
        """The private key of ``user`` (a robot id, ``fleetcd-controller`` or ``admin``)."""
        return self.keys_dir / user

    def repo_path(self, repo: str = REPO) -> Path:
        """The bare repository on the server's disk (for loading it and for reading what arrived)."""
        return self.home / "repositories" / f"{repo}.git"

    def load(self, source: Path, repo: str = REPO) -> None:
        """Copy every ref of the local repository ``source`` into the server's repository.

        Done server-side with a fetch, so gitolite's update hook (which needs a gitolite user) is
        not involved: this is the controller's writing, not what is under test.
        """
        subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.repo_path(repo)),
                "fetch",
                "--quiet",
                str(source),
                "+refs/*:refs/*",
            ],
            check=True,
            env={**os.environ, **GIT_ENV},
        )

    def access(self, user: str, perm: str, ref: str, repo: str = REPO) -> bool:
        """gitolite's own verdict (``gitolite access``) on ``user`` doing ``perm`` to ``ref``."""
        done = subprocess.run(
            ["gitolite", "access", "-q", repo, user, perm, ref],
            env={**os.environ, "HOME": str(self.home)},
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def push_advertisement(self, user: str, repo: str = REPO, key: Path | None = None) -> list[str]:
        """The refs ``git receive-pack`` advertises to ``user`` starting a push to ``repo``, over SSH
        with ``user``'s key (or ``key``) as the agent logs in; the push is then ended without
        sending anything."""
        done = subprocess.run(
            [*self._ssh(key or self.key(user)), f"{self.user}@127.0.0.1", f"git-receive-pack '{repo}'"],
            input=b"0000",  # no commands: receive-pack ends after its advertisement
            capture_output=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"receive-pack of {repo} as {user} failed: {done.stderr.decode(errors='replace')}"
            )
        refs, data = [], done.stdout
        while len(data) >= 4 and data[:4] != b"0000":
            size = int(data[:4], 16)
            line, data = data[4:size], data[size:]
            name = line.split(b"\0", 1)[0].rstrip(b"\n").split(b" ", 1)[1].decode()
            if name != "capabilities^{}":  # what an empty advertisement carries its capabilities on
                refs.append(name)
        return refs

    def _ssh(self, key: Path) -> list[str]:
        return [
            "ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-p", str(self.port),
        ]  # fmt: skip

    # --- the gitolite-admin repository, as an administrator changes the server ------------------------
    def admin_ssh(self) -> dict[str, str]:
        """The environment that makes ``git`` log in as ``admin`` (for clone and push)."""
        command = (
            f"ssh -i {self.key(ADMIN)} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no "
            f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -p {self.port}"
        )
        return {**os.environ, **GIT_ENV, "GIT_SSH_COMMAND": command}

    def admin_checkout(self, dest: Path) -> Path:
        """A clone of ``gitolite-admin`` holding what :meth:`__enter__` set up (the fleet block and
        every key), pushed back so the admin repository, not ``~/.gitolite``, is what the server
        runs from. Pushing ``dest`` then changes the server as it would in production."""
        env = self.admin_ssh()
        url = f"ssh://{self.user}@127.0.0.1:{self.port}/gitolite-admin"
        subprocess.run(["git", "clone", "-q", url, str(dest)], check=True, env=env, capture_output=True)
        admin = self.home / ".gitolite"
        shutil.copyfile(admin / "conf" / "gitolite.conf", dest / "conf" / "gitolite.conf")
        for key in (admin / "keydir").glob("*.pub"):
            shutil.copyfile(key, dest / "keydir" / key.name)
        for args in (["add", "-A"], ["commit", "-q", "-m", "fleet repository and keys"], ["push", "-q"]):
            subprocess.run(["git", "-C", str(dest), *args], check=True, env=env, capture_output=True)
        for name, value in (("user.name", "Fleet Admin"), ("user.email", "admin@fleet.test")):
            subprocess.run(["git", "-C", str(dest), "config", name, value], check=True)
        return dest
