"""What a fleet operator meets when ``fleetcd`` cannot do what was asked: the exit-code table of
docs/cli.md, row by row, against real git servers and real fleet work trees.

The code is the contract with the job or person running the command: 5 says "retry later" (the
server is down), 4 "fix this machine or option" (a cache that cannot be created, a keyring without
the controller key, a folder that is no fleet repository), 1 "this name or content is wrong" (no
such rollout, nothing to roll back to), 2 "the command line is wrong". Each case also checks what
must not happen: nothing written to the server, the work tree or the cache it refused, and the
message names what was wrong (the URL, the file, the option). The commands run in-process through
the real ``fleetcd`` group (``tests/test_ops_read.fleetcd``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleetcd.cli.exitcodes import Exit
from fleetcd.layout import rollout_path
from tests.clirun import fleetcd
from tests.disks import fill, mounted
from tests.fleetrepo import FleetRepoBuilder, committed_standard_fleet
from tests.gitrepos import GitDaemon, bare_repo, free_port, git
from tests.gpgkeys import KeyFactory

FLEETCD = [sys.executable, "-c", "from controller.cli import main; main()"]
AUTHOR = ["--author", "Ops Person <ops@fleet.test>"]
ROLLOUT = "nav-1-0-0"  # the standard fleet's rollout (tests/fleetrepo.py)

# Every command that reads the fleet repository's remote into a mirror, with what it needs besides.
READERS = {
    "get-rollouts": ["get", "rollouts"],
    "get-devices": ["get", "devices"],
    "get-releases": ["get", "releases"],
    "get-release": ["get", "release", "nav", "1.0.0"],
    "history": ["history", "amr-001"],
    "history-at": ["history", "amr-001", "--at", "-1h"],
    "receipt": ["receipt", ROLLOUT],
    "audit-verify": ["audit", "verify"],
}


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    """The standard fleet (4 robots, nav 1.0.0 approved), committed; nothing has reconciled it."""
    return committed_standard_fleet(tmp_path / "fleet", keys)


@pytest.fixture
def server(tmp_path: Path, fleet: FleetRepoBuilder) -> Path:
    """A bare server holding the fleet's main (no state branch yet)."""
    bare = bare_repo(tmp_path / "server.git")
    fleet.git("push", "-q", str(bare), "main")
    return bare


def refs_of(bare: Path) -> str:
    return git("for-each-ref", "--format=%(refname) %(objectname)", cwd=bare)


def controller(tmp_path: Path, url: str, *extra: str) -> list[str]:
    return ["controller", "reconcile", "--once", "--repo", url, "--cache", str(tmp_path / "ctl"), *extra]


# --- the server: down, missing, empty ---------------------------------------------------------------


def closed_port_url(_tmp_path: Path) -> str:
    return f"ssh://git@127.0.0.1:{free_port()}/fleet"


def missing_path_url(tmp_path: Path) -> str:
    return str(tmp_path / "no-such-server.git")


def missing_file_url(tmp_path: Path) -> str:
    return f"file://{tmp_path / 'no-such-server.git'}"


UNREACHABLE = {
    "ssh-port-closed": closed_port_url,
    "no-path": missing_path_url,
    "no-file-url": missing_file_url,
}


@pytest.mark.parametrize("where", sorted(UNREACHABLE))
@pytest.mark.parametrize("command", sorted(READERS))
def test_a_remote_that_cannot_be_reached_exits_5_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, where: str
) -> None:
    url = UNREACHABLE[where](tmp_path)
    code, out, err = fleetcd(capsys, *READERS[command], "--repo", url, "--cache", str(tmp_path / "cache"))
    assert code == Exit.TRANSPORT, err
    assert out == "", "nothing listed from a fetch that failed"
    assert url in err or url.removeprefix("file://") in err


def test_the_controller_against_a_server_that_went_down_exits_5_and_records_nothing(
    tmp_path: Path, keys: KeyFactory, server: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real git:// daemon that served the fleet, then stopped: the CI job's retry code, and the
    server (when back) holds no half-written state."""
    with GitDaemon(tmp_path) as daemon:
        url = daemon.url(server)
        code, _, err = fleetcd(capsys, "get", "releases", "--repo", url, "--cache", str(tmp_path / "ops"))
        assert code == Exit.OK, err
    before = refs_of(server)
    code, out, err = fleetcd(capsys, *controller(tmp_path, url, "--gnupghome", str(keys.home)))
    assert code == Exit.TRANSPORT, out + err
    assert url in err
    assert refs_of(server) == before


@pytest.mark.parametrize("command", sorted(READERS))
def test_a_server_without_main_exits_4_naming_the_server_and_main(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """An empty repository (a wrong --repo, or a server set up but never pushed to) is a setup
    problem: retrying (5) would never help, and nothing in it is invalid content (1)."""
    empty = bare_repo(tmp_path / "empty.git")
    code, _, err = fleetcd(capsys, *READERS[command], "--repo", str(empty), "--cache", str(tmp_path / "c"))
    assert code == Exit.SETUP, err
    assert str(empty) in err and "refs/heads/main" in err


def test_the_controller_against_a_server_without_main_exits_4_and_writes_nothing_there(
    tmp_path: Path, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = bare_repo(tmp_path / "empty.git")
    code, _, err = fleetcd(capsys, *controller(tmp_path, str(empty), "--gnupghome", str(keys.home)))
    assert code == Exit.SETUP, err
    assert "refs/heads/main" in err
    assert refs_of(empty) == ""


# --- the cache ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [*sorted(READERS), "controller"])
def test_a_cache_that_cannot_be_created_exits_4_naming_it(
    tmp_path: Path, keys: KeyFactory, server: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """--cache under a regular file (a typo, a full or read-only disk look the same to mkdir): the
    machine is at fault, the message says which path, and the server is untouched."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache's parent should be\n")
    cache = blocker / "cache"
    before = refs_of(server)
    if command == "controller":
        argv = ["controller", "reconcile", "--once", "--gnupghome", str(keys.home)]
    else:
        argv = READERS[command]
    code, out, err = fleetcd(capsys, *argv, "--repo", str(server), "--cache", str(cache))
    assert code == Exit.SETUP, out + err
    assert str(cache) in err
    assert blocker.read_text() == "a file where the cache's parent should be\n"
    assert refs_of(server) == before


@pytest.mark.parametrize("warm", [False, True], ids=["empty", "warm"])
@pytest.mark.parametrize("command", ["get-releases", "controller"])
def test_a_read_only_cache_exits_4_naming_it(
    tmp_path: Path,
    keys: KeyFactory,
    server: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    warm: bool,
) -> None:
    """A cache on a read-only filesystem (a real read-only mount: root writes through file modes),
    empty or holding a mirror from before: the machine's problem, named; the server untouched."""
    cache = tmp_path / "cache"
    cache.mkdir()
    if warm:
        assert fleetcd(capsys, "get", "releases", "--repo", str(server), "--cache", str(cache))[0] == 0
    argv = (
        ["controller", "reconcile", "--once", "--gnupghome", str(keys.home)]
        if command == "controller"
        else ["get", "releases"]
    )
    before = refs_of(server)
    source = ["--bind", str(cache)] if warm else ["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs"]
    with mounted(cache, *source):
        if warm:
            remounted = subprocess.run(["mount", "-o", "remount,ro,bind", str(cache)], capture_output=True)
            assert remounted.returncode == 0, remounted.stderr
        code, out, err = fleetcd(capsys, *argv, "--repo", str(server), "--cache", str(cache))
    assert code == Exit.SETUP, out + err
    assert str(cache) in err and "Read-only file system" in err
    assert refs_of(server) == before


def test_a_cache_option_naming_a_file_is_usage_before_anything_is_fetched(
    tmp_path: Path, server: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    cache.write_text("")
    code, _, err = fleetcd(capsys, "get", "rollouts", "--repo", str(server), "--cache", str(cache))
    assert code == Exit.USAGE and "--cache" in err
    assert cache.read_text() == ""


def test_a_garbled_operator_cache_is_rebuilt_from_the_server(
    tmp_path: Path, server: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The cache is documented as safe to delete; one that is garbage must not need deleting."""
    cache = tmp_path / "cache"
    argv = ["get", "releases", "--repo", str(server), "--cache", str(cache), "-o", "json"]
    code, first, err = fleetcd(capsys, *argv)
    assert code == Exit.OK, err
    (mirror,) = cache.glob("mirror-*.git")
    (mirror / "config").write_text("[[[ not git config\n")
    (mirror / "HEAD").write_text("garbage\n")
    code, again, err = fleetcd(capsys, *argv)
    assert code == Exit.OK, err
    assert again == first
    assert "rebuilding it from the server" in caplog.text and str(mirror) in caplog.text


def test_a_full_cache_disk_is_a_setup_problem_naming_it_not_a_bug(
    tmp_path: Path, keys: KeyFactory, server: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The controller's cache on a disk that filled up (another process's log): exit 4 naming the
    disk problem, retried by `controller run`, never 70 ('report a bug') and never recorded as an
    internal error; the server holds nothing half-written."""
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted(disk, "-t", "tmpfs", "-o", "size=1m", "tmpfs"):
        cache = ["--cache", str(disk)]
        assert fleetcd(capsys, "get", "releases", "--repo", str(server), *cache)[0] == Exit.OK
        fill(disk)
        before = refs_of(server)
        argv = [
            "controller",
            "reconcile",
            "--once",
            "--repo",
            str(server),
            *cache,
            "--gnupghome",
            str(keys.home),
        ]
        code, out, err = fleetcd(capsys, *argv)
        assert refs_of(server) == before
    assert code == Exit.SETUP, out + err
    assert "No space left on device" in err and "a bug in fleetcd" not in err


# --- the controller's own setup ------------------------------------------------------------------------


def test_the_controller_without_its_secret_key_exits_4_naming_the_key_and_pushes_nothing(
    tmp_path: Path, fleet: FleetRepoBuilder, server: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A keyring that lacks the controller key of main's trust root: no state branch, no desired
    state, no audit line signed by nobody; the fingerprint the operator must install is named."""
    empty = tmp_path / "gnupg"
    empty.mkdir(mode=0o700)
    before = refs_of(server)
    code, out, err = fleetcd(capsys, *controller(tmp_path, str(server), "--gnupghome", str(empty)))
    assert code == Exit.SETUP, out + err
    controller_fpr = fleet.trust["controller"][0]["fingerprint"]
    assert controller_fpr in err and "no secret key" in err
    assert refs_of(server) == before


def test_the_controller_without_a_keyring_option_or_gnupghome_is_usage(
    tmp_path: Path, server: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GNUPGHOME", raising=False)
    code, _, err = fleetcd(capsys, *controller(tmp_path, str(server)))
    assert code == Exit.USAGE and "--gnupghome" in err
    assert not (tmp_path / "ctl").exists()


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--metrics-file", "metrics.txt", ".prom"),
        ("--metrics-file", "no-such-folder/fleetcd.prom", "no such folder"),
        ("--metrics-address", "localhost", "--metrics-address"),
        ("--interval", "0", "--interval"),
        ("--interval", "86400", "--interval"),
        ("--status-shard", "no-equals-sign", "--status-shard"),
        ("--status-shard", "a=/x", "--status-shard"),
    ],
    ids=["metrics-not-prom", "metrics-folder-missing", "address-no-port", "interval-zero", "interval-day",
         "shard-no-name", "shard-once"],
)  # fmt: skip
def test_a_bad_controller_run_option_is_usage_before_the_server_or_cache_is_touched(
    tmp_path: Path,
    keys: KeyFactory,
    server: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    option: str,
    value: str,
    says: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    before = refs_of(server)
    argv = ["controller", "run", "--repo", str(server), "--cache", str(tmp_path / "ctl")]
    argv += ["--gnupghome", str(keys.home), option, value]
    if value == "a=/x":
        argv += [option, "a=/y"]  # the same shard name twice
    code, out, err = fleetcd(capsys, *argv)
    assert code == Exit.USAGE, out + err
    assert says in err
    assert not (tmp_path / "ctl").exists() and refs_of(server) == before


# --- operator edits in a work tree ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["pause", "resume", "rollback"])
def test_an_edit_of_an_unknown_rollout_exits_1_naming_its_file_and_writes_nothing(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    head = fleet.git("rev-parse", "HEAD")
    code, out, err = fleetcd(capsys, command, "ghost", "--repo", str(fleet.root), *AUTHOR)
    assert code == Exit.INVALID, out + err
    assert "rollouts/ghost.yaml" in err and "'ghost'" in err
    assert fleet.git("rev-parse", "HEAD") == head and fleet.git("status", "--porcelain") == ""


def test_a_rollback_with_nothing_older_published_exits_1_naming_the_release_line(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    head = fleet.git("rev-parse", "HEAD")
    code, _, err = fleetcd(capsys, "rollback", ROLLOUT, "--repo", str(fleet.root), *AUTHOR)
    assert code == Exit.INVALID
    line = fleet.line_of(rollout_path(ROLLOUT), "release:")
    assert f"{rollout_path(ROLLOUT)}:{line}: release: " in err and "--to VERSION" in err
    assert fleet.git("rev-parse", "HEAD") == head and fleet.git("status", "--porcelain") == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["pause", ROLLOUT],
        ["resume", ROLLOUT],
        ["rollback", ROLLOUT],
        ["deploy", "nav@1.0.0", "--to", "canary", "--idempotency-key", "k"],
        ["withdraw", "nav@1.0.0", "--reason", "crashes"],
    ],
    ids=["pause", "resume", "rollback", "deploy", "withdraw"],
)
def test_an_edit_outside_a_fleet_repository_exits_4_naming_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    folder = tmp_path / "somewhere-else"
    folder.mkdir()
    git("init", "-q", str(folder))
    code, out, err = fleetcd(capsys, *argv, "--repo", str(folder), *AUTHOR)
    assert code == Exit.SETUP, out + err
    assert str(folder) in err and "fleet.yaml" in err
    assert sorted(p.name for p in folder.iterdir()) == [".git"]


def test_a_pause_without_a_git_identity_exits_4_and_leaves_the_tree_clean(
    tmp_path: Path, fleet: FleetRepoBuilder
) -> None:
    """On a fresh laptop: no user.name/user.email anywhere. The edit must not be left behind. A
    process of its own: libgit2 reads where the global git config lives once, at start."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k != "EMAIL"}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1")
    before = fleet.read(rollout_path(ROLLOUT))
    done = subprocess.run(
        [*FLEETCD, "pause", ROLLOUT, "--repo", str(fleet.root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == Exit.SETUP, done.stdout + done.stderr
    assert "user.name" in done.stderr and "--author" in done.stderr
    assert fleet.read(rollout_path(ROLLOUT)) == before
    assert fleet.git("status", "--porcelain") == ""


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["deploy", "nav", "--to", "canary", "--idempotency-key", "k"], "APP@VERSION"),
        (["deploy", "../nav@1.0.0", "--to", "canary", "--idempotency-key", "k"], "APP@VERSION"),
        (["deploy", "nav@", "--to", "canary", "--idempotency-key", "k"], "APP@VERSION"),
        (["deploy", "nav@1.0.0", "--to", "canary", "--idempotency-key", " "], "empty"),
        (["deploy", "nav@1.0.0", "--to", "canary", "--idempotency-key", "k" * 201], "200"),
        (["deploy", "nav@1.0.0", "--to", "canary", "--idempotency-key", "a\tb"], "printable"),
        (["deploy", "nav@1.0.0", "--idempotency-key", "k"], "--to"),
        (["withdraw", "nav@1.0.0"], "--reason"),
        (["rollback"], "ROLLOUT"),
    ],
    ids=["no-at", "traversal", "no-version", "blank-key", "long-key", "tab-key", "no-target", "no-reason",
         "no-rollout"],
)  # fmt: skip
def test_a_malformed_edit_command_is_usage_and_writes_nothing(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    head = fleet.git("rev-parse", "HEAD")
    code, out, err = fleetcd(capsys, *argv, "--repo", str(fleet.root), *AUTHOR)
    assert code == Exit.USAGE, out + err
    assert says in err
    assert fleet.git("rev-parse", "HEAD") == head and fleet.git("status", "--porcelain") == ""


# --- what `controller reconcile --once` prints for a CI job's log ------------------------------------


def test_reconcile_once_prints_what_it_applied_then_the_stall_naming_the_file_then_nothing_new(
    tmp_path: Path,
    keys: KeyFactory,
    fleet: FleetRepoBuilder,
    server: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The one line a CI job's log keeps: which main commit, the state commit, how many robots got
    new desired state; on invalid content exit 1 with the reason naming the file; a rerun with
    nothing new changes nothing and says so."""
    argv = controller(tmp_path, str(server), "--gnupghome", str(keys.home))
    code, out, err = fleetcd(capsys, *argv)
    assert code == Exit.OK, err
    main = fleet.git("rev-parse", "HEAD")
    assert out.startswith(f"reconciled {main[:12]}: state ") and "unchanged" not in out
    assert "4 robots updated" in out and "STALLED" not in out

    fleet.rollout(ROLLOUT, app="nav", release="1.0.0", cohorts=["canary", "nightshift"])
    fleet.commit("target a cohort that does not exist")
    fleet.git("push", "-q", str(server), "main")
    code, out, err = fleetcd(capsys, *argv)
    assert code == Exit.INVALID, out + err
    assert f"reconciled {fleet.git('rev-parse', 'HEAD')[:12]}" in out
    assert "0 robots updated" in out
    stalled = out.split("STALLED: ", 1)[1]
    assert rollout_path(ROLLOUT) in stalled and "nightshift" in stalled

    code, out, err = fleetcd(capsys, *argv)
    assert code == Exit.INVALID, "still stalled: nothing new was committed"
    assert "state unchanged" in out and "0 robots updated" in out


# --- approve ---------------------------------------------------------------------------------------------


def test_approve_with_a_key_and_all_approvers_is_usage_and_signs_nothing(
    fleet: FleetRepoBuilder, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = keys.key("alice")
    before = {p: p.read_bytes() for p in (fleet.root / "approvals").rglob("*.asc")}
    args = [
        "approve",
        str(fleet.root / rollout_path(ROLLOUT)),
        "--repo",
        str(fleet.root),
        "--gnupghome",
        str(keys.home),
    ]
    code, _, err = fleetcd(capsys, *args, "--key", alice.fingerprint, "--all-approvers")
    assert code == Exit.USAGE and "exclude each other" in err
    assert {p: p.read_bytes() for p in (fleet.root / "approvals").rglob("*.asc")} == before


def test_approving_with_a_key_that_is_no_approver_is_refused_and_signs_nothing(
    fleet: FleetRepoBuilder, keys: KeyFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """The release signer's key is trusted, for releases: it must not count as an approval."""
    signer = keys.key("release-bot")
    args = [
        "approve",
        str(fleet.root / rollout_path(ROLLOUT)),
        "--repo",
        str(fleet.root),
        "--gnupghome",
        str(keys.home),
    ]
    code, out, err = fleetcd(capsys, *args, "--key", signer.fingerprint)
    assert code == Exit.SETUP, out + err
    assert signer.fingerprint in err
    assert not (fleet.root / "approvals" / ROLLOUT / f"{signer.fingerprint}.asc").exists()
    assert fleet.git("status", "--porcelain") == ""
