"""The git CLI jobs behind fleetcd.git.remote (fleetcd.git.gitcli), against real bare repositories.

A refusal must never be read as success and must name the ref that caused it: an atomic push that
fails names the ref the server refused, not one refused only because of it; a stale lease says so;
the server's own words (a hook's message) are passed on. Refs are listed and packed with the real
CLI; the byte count of a fetch comes from git's own packet trace and must count what a server
sends, so a hostile server cannot hide a large answer from the cap.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleetcd.errors import PushRejected, TransportError
from fleetcd.git.gitcli import (
    FetchedRef,
    check_push,
    checked_url,
    fetch_ref_v2,
    local_path,
    ls_remote,
    pack_refs,
    push,
    received_bytes,
    remove_empty_ref_dirs,
)
from tests.gitrepos import bare_repo, commit_files, git, install_hook, rev_parse, work_repo


@pytest.fixture
def server(tmp_path: Path) -> Path:
    return bare_repo(tmp_path / "server.git")


@pytest.fixture
def client(tmp_path: Path) -> Path:
    repo = work_repo(tmp_path / "client")
    commit_files(repo, {"a.txt": b"one\n"}, "one")
    return repo


def git_dir(work: Path) -> Path:
    return work / ".git"


# --- URLs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["", "-oProxyCommand=evil", "--upload-pack=touch /tmp/x"], ids=repr)
def test_a_url_git_would_read_as_an_option_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="empty or starts with '-'"):
        checked_url(url)


@pytest.mark.parametrize(
    "url",
    ["/srv/fleet.git", "file:///srv/fleet.git", "ssh://git@host/fleet.git", "git@host:fleet.git"],
    ids=repr,
)
def test_a_good_url_is_returned_unchanged(url: str) -> None:
    assert checked_url(url) == url


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("/srv/fleet.git", "/srv/fleet.git"),
        ("file:///srv/fleet.git", "/srv/fleet.git"),
        ("relative/fleet.git", "relative/fleet.git"),
        ("./a:b/fleet.git", "a:b/fleet.git"),
    ],
    ids=["absolute", "file-url", "relative", "colon-after-slash"],
)
def test_local_path_strips_only_the_file_scheme(url: str, path: str) -> None:
    assert local_path(url) == Path(path)


# --- push ---------------------------------------------------------------------------------------------


def test_a_push_lands_on_the_server(server: Path, client: Path) -> None:
    push(git_dir(client), str(server), ["refs/heads/main:refs/heads/main"])
    assert rev_parse(server, "refs/heads/main") == rev_parse(client, "HEAD")


def test_a_wildcard_refspec_pushes_every_matching_ref(server: Path, client: Path) -> None:
    for name in ("r1", "r2", "r3"):
        git("update-ref", f"refs/fleetcd/desired/{name}", "HEAD", cwd=client)
    push(git_dir(client), str(server), ["refs/fleetcd/desired/*:refs/fleetcd/desired/*"])
    listed = ls_remote(str(server), ["refs/fleetcd/desired/*"])
    assert set(listed) == {f"refs/fleetcd/desired/r{i}" for i in (1, 2, 3)}


def test_a_pre_receive_refusal_names_the_ref_and_passes_on_the_servers_words(
    server: Path, client: Path
) -> None:
    install_hook(server, "pre-receive", 'echo "status refs are commits only, robot amr-7" >&2\nexit 1\n')
    with pytest.raises(PushRejected) as caught:
        push(git_dir(client), str(server), ["refs/heads/main:refs/fleetcd/status/amr-7/report"])
    message = str(caught.value)
    assert "refs/fleetcd/status/amr-7/report" in message
    assert "status refs are commits only, robot amr-7" in message
    assert rev_parse(server, "refs/fleetcd/status/amr-7/report") is None


def atomic_push_with_one_bad_ref(server: Path, client: Path) -> PushRejected:
    install_hook(
        server,
        "update",
        'case "$1" in refs/fleetcd/desired/bad) echo "no: $1" >&2; exit 1;; esac\nexit 0\n',
    )
    for name in ("a", "bad", "c", "d"):
        git("update-ref", f"refs/fleetcd/desired/{name}", "HEAD", cwd=client)
    with pytest.raises(PushRejected) as caught:
        push(git_dir(client), str(server), ["refs/fleetcd/desired/*:refs/fleetcd/desired/*"], atomic=True)
    return caught.value


def test_an_atomic_push_refused_for_one_ref_lands_none_and_passes_on_why(server: Path, client: Path) -> None:
    refused = atomic_push_with_one_bad_ref(server, client)
    assert "also rejected" in str(refused)
    assert "server said: no: refs/fleetcd/desired/bad" in str(refused)
    assert ls_remote(str(server), ["refs/fleetcd/desired/*"]) == {}, "atomic: no ref may have landed"


def test_an_atomic_push_names_the_ref_the_server_refused_not_its_followers(
    server: Path, client: Path
) -> None:
    refused = atomic_push_with_one_bad_ref(server, client)
    assert refused.args[0].split(" rejected")[0].endswith("refs/fleetcd/desired/bad")


def test_a_non_atomic_push_lands_the_good_refs_and_still_raises_for_the_bad(
    server: Path, client: Path
) -> None:
    install_hook(server, "update", 'case "$1" in *bad) exit 1;; esac\nexit 0\n')
    for name in ("good", "bad"):
        git("update-ref", f"refs/fleetcd/desired/{name}", "HEAD", cwd=client)
    with pytest.raises(PushRejected, match="refs/fleetcd/desired/bad"):
        push(git_dir(client), str(server), ["refs/fleetcd/desired/*:refs/fleetcd/desired/*"])
    assert set(ls_remote(str(server), ["refs/fleetcd/desired/*"])) == {"refs/fleetcd/desired/good"}


def test_a_non_fast_forward_push_says_the_servers_ref_is_not_an_ancestor(
    server: Path, client: Path, tmp_path: Path
) -> None:
    push(git_dir(client), str(server), ["refs/heads/main:refs/heads/main"])
    other = work_repo(tmp_path / "other")
    commit_files(other, {"b.txt": b"unrelated\n"}, "unrelated history")
    with pytest.raises(PushRejected) as caught:
        push(git_dir(other), str(server), ["refs/heads/main:refs/heads/main"])
    assert "non-fast-forward" in str(caught.value) and "not an ancestor" in str(caught.value)


def test_a_lease_on_the_current_value_lets_a_rewrite_through(server: Path, client: Path) -> None:
    push(git_dir(client), str(server), ["refs/heads/main:refs/heads/main"])
    before = rev_parse(server, "refs/heads/main")
    assert before is not None
    git("commit", "--quiet", "--amend", "--allow-empty", "-m", "rewritten", cwd=client)
    push(
        git_dir(client), str(server), ["refs/heads/main:refs/heads/main"], leases={"refs/heads/main": before}
    )
    assert rev_parse(server, "refs/heads/main") == rev_parse(client, "HEAD")


def test_a_stale_lease_is_refused_and_said_to_be_stale(server: Path, client: Path) -> None:
    # Another controller moved the state branch since this one read it.
    push(git_dir(client), str(server), ["refs/heads/main:refs/heads/main"])
    commit_files(client, {"a.txt": b"two\n"}, "two")
    stale = "0" * 39 + "1"
    with pytest.raises(PushRejected) as caught:
        push(
            git_dir(client),
            str(server),
            ["refs/heads/main:refs/heads/main"],
            leases={"refs/heads/main": stale},
        )
    assert "no longer the value this push expected" in str(caught.value)
    assert rev_parse(server, "refs/heads/main") != rev_parse(client, "HEAD")


def test_a_lease_that_the_ref_must_not_exist_refuses_when_it_does(server: Path, client: Path) -> None:
    push(git_dir(client), str(server), ["refs/heads/main:refs/fleetcd/state"])
    commit_files(client, {"a.txt": b"two\n"}, "two")
    with pytest.raises(PushRejected, match="refs/fleetcd/state"):
        push(
            git_dir(client),
            str(server),
            ["refs/heads/main:refs/fleetcd/state"],
            leases={"refs/fleetcd/state": None},
        )


def test_a_plus_refspec_overrides_a_lease_so_leased_refs_must_not_carry_one(
    server: Path, client: Path
) -> None:
    # git's documented rule, pinned here because controller.reconcile.source relies on it: the
    # state branch is pushed without '+' so that its lease is checked.
    push(git_dir(client), str(server), ["refs/heads/main:refs/heads/main"])
    commit_files(client, {"a.txt": b"two\n"}, "two")
    stale = "0" * 39 + "1"
    push(
        git_dir(client), str(server), ["+refs/heads/main:refs/heads/main"], leases={"refs/heads/main": stale}
    )
    assert rev_parse(server, "refs/heads/main") == rev_parse(client, "HEAD")


def test_pushing_to_a_missing_repository_is_a_transport_error(client: Path, tmp_path: Path) -> None:
    with pytest.raises(TransportError) as caught:
        push(git_dir(client), str(tmp_path / "nowhere.git"), ["refs/heads/main:refs/heads/main"])
    assert not isinstance(caught.value, PushRejected)
    assert "nowhere.git" in str(caught.value)


# --- check_push on git's porcelain output (pure) ------------------------------------------------------


def finished(stdout: str, returncode: int = 1, stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(["git", "push"], returncode, stdout, stderr)


def test_a_clean_porcelain_push_passes() -> None:
    check_push(finished("To /srv/x\n*\trefs/heads/main:refs/heads/main\t[new branch]\nDone\n", 0), "push")


def test_a_refusal_is_never_success_even_with_exit_code_zero() -> None:
    out = "To /srv/x\n!\trefs/heads/main:refs/heads/main\t[remote rejected] (hook declined)\nDone\n"
    with pytest.raises(PushRejected, match="hook declined"):
        check_push(finished(out, 0), "push")


def test_a_failure_without_porcelain_lines_is_a_transport_error_with_gits_words() -> None:
    with pytest.raises(TransportError, match="fatal: unable to access") as caught:
        check_push(finished("", 128, "fatal: unable to access 'https://x/': timeout\n"), "push to x")
    assert not isinstance(caught.value, PushRejected)


def test_a_failure_without_any_output_says_the_exit_code() -> None:
    with pytest.raises(TransportError, match="git exited 128"):
        check_push(finished("", 128), "push to x")


def test_many_refused_refs_name_five_and_count_the_rest() -> None:
    lines = [f"!\trefs/a/r{i}:refs/a/r{i}\t[rejected] (atomic push failed)" for i in range(12)]
    lines.insert(3, "!\trefs/a/culprit:refs/a/culprit\t[remote rejected] (pre-receive hook declined)")
    with pytest.raises(PushRejected) as caught:
        check_push(finished("\n".join(lines) + "\n"), "push")
    message = str(caught.value)
    assert (
        message.split(":", 1)[0].endswith("refs/a/culprit") or "refs/a/culprit" in message.split("(also")[0]
    )
    assert "and 7 more" in message


def test_the_servers_words_are_joined_and_bounded() -> None:
    stderr = "".join(f"remote: line {i}\n" for i in range(50)) + "remote:   \nerror: failed to push\n"
    out = "!\trefs/heads/main:refs/heads/main\t[remote rejected] (pre-receive hook declined)\n"
    with pytest.raises(PushRejected) as caught:
        check_push(finished(out, 1, stderr), "push")
    message = str(caught.value)
    assert "server said: line 0 | line 1" in message
    assert "line 19" in message and "line 20" not in message
    assert "error: failed to push" not in message


@pytest.mark.parametrize(
    "summary",
    ["[rejected] (non-fast-forward)", "[rejected] (fetch first)"],
    ids=["non-fast-forward", "fetch-first"],
)
def test_both_spellings_of_a_non_fast_forward_are_explained(summary: str) -> None:
    with pytest.raises(PushRejected, match="not an ancestor"):
        check_push(finished(f"!\trefs/heads/main:refs/heads/main\t{summary}\n"), "push")


def test_lines_that_are_not_porcelain_are_ignored() -> None:
    noise = "To /srv/x\n!not\ta line\n=\trefs/heads/main:refs/heads/main\t[up to date]\nDone\n"
    check_push(finished(noise, 0), "push")


# --- pack_refs / ls_remote ----------------------------------------------------------------------------


def test_pack_refs_moves_loose_refs_into_packed_refs(server: Path, client: Path) -> None:
    for i in range(20):
        git("update-ref", f"refs/fleetcd/status/r{i}/report", "HEAD", cwd=client)
    push(git_dir(client), str(server), ["refs/fleetcd/status/*:refs/fleetcd/status/*"])
    assert (server / "refs/fleetcd/status/r0/report").exists()
    pack_refs(server)
    assert not (server / "refs/fleetcd/status/r0/report").exists()
    assert "refs/fleetcd/status/r19/report" in (server / "packed-refs").read_text()
    assert len(ls_remote(str(server), ["refs/fleetcd/status/*"])) == 20


def test_pack_refs_removes_the_directories_of_the_refs_it_packed_and_keeps_every_ref(
    server: Path, client: Path
) -> None:
    # git pack-refs leaves refs/fleetcd/status/<id>/ behind, one empty directory per robot, which
    # every later push's ref listing reads (docs/git-server.md, "Why the directories").
    for i in range(20):
        git("update-ref", f"refs/fleetcd/status/r{i}/report", "HEAD", cwd=client)
    git("update-ref", "refs/namespaces/r0/refs/fleetcd/desired/r0", "HEAD", cwd=client)
    push(git_dir(client), str(server), ["refs/*:refs/*"])

    pack_refs(server)

    assert sorted(p.name for p in (server / "refs").iterdir()) == ["fleetcd", "heads", "namespaces", "tags"]
    assert not list((server / "refs" / "namespaces").iterdir())  # r0/refs/fleetcd/desired/ are gone
    assert not list((server / "refs" / "fleetcd").iterdir())
    assert len(ls_remote(str(server), ["refs/fleetcd/status/*"])) == 20
    assert ls_remote(str(server), ["refs/namespaces/*"]) == {
        "refs/namespaces/r0/refs/fleetcd/desired/r0": rev_parse(client, "HEAD")
    }
    # A robot's next push creates its directory again.
    git("commit", "-q", "--allow-empty", "-m", "two", cwd=client)
    push(git_dir(client), str(server), ["HEAD:refs/fleetcd/status/r5/report"])
    assert ls_remote(str(server), ["refs/fleetcd/status/r5/*"]) == {
        "refs/fleetcd/status/r5/report": rev_parse(client, "HEAD")
    }
    assert remove_empty_ref_dirs(server / "refs") == 0  # the loose ref's directories are not empty
    assert (server / "refs/fleetcd/status/r5/report").is_file()


def test_pack_refs_of_a_non_repository_is_a_transport_error(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="packing the refs"):
        pack_refs(tmp_path / "absent")


def test_ls_remote_lists_only_refs_matching_the_patterns_with_their_ids(server: Path, client: Path) -> None:
    git("update-ref", "refs/fleetcd/desired/amr-1", "HEAD", cwd=client)
    push(
        git_dir(client),
        str(server),
        ["refs/heads/main:refs/heads/main", "refs/fleetcd/desired/amr-1:refs/fleetcd/desired/amr-1"],
    )
    head = rev_parse(client, "HEAD")
    assert ls_remote(str(server), ["refs/fleetcd/*"]) == {"refs/fleetcd/desired/amr-1": head}
    assert set(ls_remote(str(server), [])) == {"refs/heads/main", "refs/fleetcd/desired/amr-1"}
    assert ls_remote(str(server), ["refs/nothing/*"]) == {}


def test_ls_remote_of_a_missing_repository_is_a_transport_error(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="listing the refs of"):
        ls_remote(str(tmp_path / "nowhere.git"), [])


# --- fetch_ref_v2 -------------------------------------------------------------------------------------


@pytest.fixture
def robot(tmp_path: Path) -> Path:
    return bare_repo(tmp_path / "robot.git")


def test_a_v2_fetch_brings_the_ref_and_counts_the_bytes(server: Path, client: Path, robot: Path) -> None:
    commit_files(client, {"big.bin": bytes(range(256)) * 400}, "payload")
    git("update-ref", "refs/fleetcd/desired/amr-1", "HEAD", cwd=client)
    push(git_dir(client), str(server), ["refs/fleetcd/desired/amr-1:refs/fleetcd/desired/amr-1"])

    fetched = fetch_ref_v2(robot, f"file://{server}", "refs/fleetcd/desired/amr-1")

    assert fetched.found
    assert rev_parse(robot, "refs/fleetcd/desired/amr-1") == rev_parse(client, "HEAD")
    assert fetched.bytes_received > 1000, "the pack itself must be counted"
    again = fetch_ref_v2(robot, f"file://{server}", "refs/fleetcd/desired/amr-1")
    assert again.found and again.bytes_received < fetched.bytes_received, "a no-op poll costs less"


def test_a_v2_fetch_of_a_ref_the_server_lacks_is_not_found(server: Path, client: Path, robot: Path) -> None:
    push(git_dir(client), str(server), ["refs/heads/main:refs/heads/main"])
    fetched = fetch_ref_v2(robot, f"file://{server}", "refs/fleetcd/desired/amr-404")
    assert fetched == FetchedRef(False, fetched.bytes_received)
    assert rev_parse(robot, "refs/fleetcd/desired/amr-404") is None


def test_a_v2_fetch_from_a_missing_server_is_a_transport_error(robot: Path, tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="fetch of refs/fleetcd/desired/amr-1"):
        fetch_ref_v2(robot, f"file://{tmp_path}/nowhere.git", "refs/fleetcd/desired/amr-1")


# --- received_bytes over trace files (pure file reading) ----------------------------------------------


def trace(tmp_path: Path, lines: list[str], pack: bytes | None = None) -> tuple[Path, Path]:
    packets = tmp_path / "packets"
    packets.write_text("".join(f"12:00:00.000000 pkt-line.c:80 {line}\n" for line in lines))
    pack_file = tmp_path / "pack"
    if pack is not None:
        pack_file.write_bytes(pack)
    return packets, pack_file


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([], 0),
        (["packet:        fetch< version 2"], 4 + 9 + 1),
        (["packet:        fetch< 0000"], 4),
        (["packet:        fetch< 0001", "packet:        fetch< 0002"], 8),
        (["packet:        fetch> command=ls-refs"], 0),  # what the client sent is not received
        (["packet:  upload-pack< command=fetch"], 0),  # the server side of a local transport
        (["packet:        fetch< PACK ..."], 0),  # the pack is counted from its own trace
        (["packet:        fetch< a\\001b"], 4 + 3 + 1),  # an octal escape is one byte
        (["not a packet line at all"], 0),
    ],
    ids=[
        "empty",
        "one-line",
        "flush",
        "delim-and-end",
        "sent",
        "server-side",
        "pack-marker",
        "escape",
        "noise",
    ],
)
def test_received_bytes_counts_what_the_client_read(tmp_path: Path, lines: list[str], expected: int) -> None:
    packets, pack = trace(tmp_path, lines)
    assert received_bytes(packets, pack) == expected


def test_received_bytes_adds_the_pack_trace(tmp_path: Path) -> None:
    packets, pack = trace(tmp_path, ["packet:        fetch< 0000"], pack=b"P" * 5000)
    assert received_bytes(packets, pack) == 5004


def test_received_bytes_without_trace_files_is_zero_or_the_pack(tmp_path: Path) -> None:
    assert received_bytes(tmp_path / "none", tmp_path / "none-either") == 0
    (tmp_path / "pack").write_bytes(b"x" * 10)
    assert received_bytes(tmp_path / "none", tmp_path / "pack") == 10


def test_received_bytes_survives_a_trace_that_is_not_utf8(tmp_path: Path) -> None:
    packets = tmp_path / "packets"
    packets.write_bytes(b"packet:        fetch< \xff\xfe\n")
    assert received_bytes(packets, tmp_path / "pack") == 4 + 2 + 1


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("ssh://git@Git.Example.com:2222/fleet", "git.example.com"),
        ("ssh://git.example.com/fleet", "git.example.com"),
        ("git@git.example.com:fleet", "git.example.com"),
        ("git.example.com:fleet/x", "git.example.com"),
        ("https://user@cdn.example.com/fleet.git", "cdn.example.com"),
        ("ssh://git@[fe80::1]:22/fleet", "fe80::1"),
        ("git@[::1]:fleet", "::1"),
        ("/srv/git/fleet.git", None),
        ("file:///srv/git/fleet.git", None),
        ("./fleet:odd", None),
    ],
)
def test_server_host_is_the_host_ssh_compares_pins_for(url: str, host: str | None) -> None:
    from fleetcd.git.gitcli import server_host

    assert server_host(url) == host
