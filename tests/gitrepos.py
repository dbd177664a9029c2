"""Real git repositories and real git servers for transport tests: no mocks of git anywhere.

* :func:`git` runs the real git CLI with a fixed identity and clock, so commits are reproducible.
* :func:`bare_repo` / :func:`work_repo` / :func:`commit_files` build the "server" and a client.
* :func:`install_hook` puts a server-side hook (``pre-receive``, ``update``) into a bare repository.
* :class:`GitDaemon` serves a directory over ``git://`` with receive-pack enabled (hooks run there).
* :class:`SshServer` runs OpenSSH's sshd on loopback with a throwaway host key and one client key,
  so ``ssh://`` tests exercise credentials and host-key pinning exactly as a robot would.

    server = bare_repo(tmp_path / "server.git")
    with SshServer(tmp_path / "ssh") as ssh:
        url = ssh.url(server)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Fleet Tester",
    "GIT_AUTHOR_EMAIL": "tester@fleet.test",
    "GIT_COMMITTER_NAME": "Fleet Tester",
    "GIT_COMMITTER_EMAIL": "tester@fleet.test",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    "GIT_CONFIG_NOSYSTEM": "1",
}
SERVER_START_TIMEOUT_S = 10.0


def git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None, check: bool = True) -> str:
    """Run the real git CLI; returns stdout. A failure shows git's stderr in the assertion."""
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def bare_repo(path: Path) -> Path:
    """A bare "server" repository whose default branch is main."""
    git("init", "--quiet", "--bare", "--initial-branch=main", str(path))
    return path


def work_repo(path: Path) -> Path:
    git("init", "--quiet", "--initial-branch=main", str(path))
    return path


def commit_files(
    repo: Path, files: Mapping[str, bytes | None], message: str = "change", branch: str = "main"
) -> str:
    """Write (bytes) or delete (None) files in work tree ``repo``, commit on ``branch``; returns the id."""
    current = git("symbolic-ref", "--short", "HEAD", cwd=repo).strip()
    if current != branch:
        git("checkout", "--quiet", "-B", branch, cwd=repo)
    for name, data in files.items():
        target = repo / name
        if data is None:
            git("rm", "--quiet", "-r", "--", name, cwd=repo)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        git("add", "--", name, cwd=repo)
    git("commit", "--quiet", "--allow-empty", "-m", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).strip()


def rev_parse(repo: Path, ref: str) -> str | None:
    """The commit ``ref`` points at in ``repo`` (bare or not), or None when it does not exist."""
    out = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=repo, check=False).strip()
    return out or None


def install_hook(bare: Path, name: str, script: str) -> Path:
    """Install an executable server-side hook (``#!/bin/sh`` script body) into a bare repository."""
    hook = bare / "hooks" / name
    hook.write_text(script if script.startswith("#!") else "#!/bin/sh\n" + script, encoding="utf-8")
    hook.chmod(0o755)
    return hook


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"{what} exited early ({process.returncode}): {err}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}")


class _Server:
    process: subprocess.Popen[bytes] | None = None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class GitDaemon(_Server):
    """``git daemon`` serving ``base`` on loopback with push enabled; extra ``env`` reaches upload-pack."""

    def __init__(self, base: Path, env: Mapping[str, str] | None = None) -> None:
        self.base = base
        self.env = dict(env or {})
        self.port = 0

    def __enter__(self) -> GitDaemon:
        self.port = free_port()
        argv = [
            "git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack",
            "--listen=127.0.0.1", f"--port={self.port}", f"--base-path={self.base}", str(self.base),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            argv, env={**os.environ, **GIT_ENV, **self.env}, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        _wait_for_port(self.port, self.process, "git daemon")
        return self

    def url(self, repo: Path) -> str:
        return f"git://127.0.0.1:{self.port}/{repo.relative_to(self.base)}"


def sshd_binary() -> str | None:
    return shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd",) if Path(p).exists()), None)


def ssh_keygen(path: Path, comment: str) -> None:
    """A new ed25519 key pair without passphrase: ``path`` and ``path.pub``."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True
    )


def make_host_key(path: Path) -> str:
    """A new host key at ``path``; its ``SHA256:...`` fingerprint as ``ssh-keygen -l`` prints it."""
    ssh_keygen(path, path.name)
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub"], check=True, capture_output=True, text=True
    ).stdout
    return listed.split()[1]


def run_sshd(
    binary: str,
    folder: Path,
    port: int,
    host_key: Path,
    authorized_keys: Path,
    *,
    root_login: str,
    extra: Sequence[str] = (),
    what: str = "sshd",
    passwords_only: bool = False,
) -> subprocess.Popen[bytes]:
    """sshd on 127.0.0.1:``port``, public keys from ``authorized_keys`` only (``passwords_only``:
    no public keys at all, a server a robot's key cannot log in to), its config and pid file in
    ``folder`` (plus ``extra`` config lines); returned once it listens."""
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized_keys}",
        f"PubkeyAuthentication {'no' if passwords_only else 'yes'}",
        f"PasswordAuthentication {'yes' if passwords_only else 'no'}",
        "KbdInteractiveAuthentication no",
        f"PermitRootLogin {root_login}",
        "StrictModes no",
        "UsePAM no",
        "LogLevel ERROR",
        # git sends GIT_PROTOCOL=version=2 as an SSH environment variable; without this the server
        # silently falls back to protocol v0 (full ref advertisement).
        "AcceptEnv GIT_PROTOCOL",
        *extra,
        "",
    ]
    config = folder / "sshd_config"
    config.write_text("\n".join(lines), encoding="utf-8")
    # sshd refuses to start without its privilege-separation directory (Debian: /run/sshd).
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    process = subprocess.Popen(
        [binary, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    _wait_for_port(port, process, what)
    return process


class SshServer(_Server):
    """OpenSSH sshd on 127.0.0.1 accepting one generated client key for the current user.

    ``host_fingerprint`` is the host key's ``SHA256:...`` fingerprint as ``ssh-keygen -l`` prints it;
    ``client_key`` / ``client_pub`` are the paths a robot would be provisioned with.
    """

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = 0
        self.user = os.environ.get("USER") or _current_user()
        self.host_key = workdir / "ssh_host_ed25519_key"
        self.client_key = workdir / "client_ed25519"
        self.client_pub = workdir / "client_ed25519.pub"
        self.host_fingerprint = ""

    def __enter__(self) -> SshServer:
        binary = sshd_binary()
        if binary is None:
            raise RuntimeError("sshd is not installed (Debian package openssh-server)")
        self.dir.mkdir(parents=True, exist_ok=True)
        ssh_keygen(self.client_key, self.client_key.name)
        shutil.copyfile(self.client_pub, self.dir / "authorized_keys")
        self.host_fingerprint = make_host_key(self.host_key)
        self.port = free_port()
        self.process = run_sshd(
            binary,
            self.dir,
            self.port,
            self.host_key,
            self.dir / "authorized_keys",
            root_login="prohibit-password",
        )
        return self

    def url(self, repo: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{repo.resolve()}"


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
