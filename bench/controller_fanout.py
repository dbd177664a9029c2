"""Benchmark: fan-out of one release to 10,000 robots — the controller's desired-state write vs git.

Every robot of a generated fleet (:mod:`bench.fleetgen`, releases signed by a throwaway key) gets a
bundle deploying the navigator release (:func:`controller.delivery.bundle_for`). Timed, median of
``--runs``, each into a fresh bare repository: the controller's
:func:`controller.delivery.write_desired_state` (one gpg-signed root, four files and one parentless
commit per robot, every ref moved in one transaction) versus ``git fast-import`` writing the same
blobs, trees and commits — its stream is made from the bytes the controller wrote, so the commit
ids come out identical (checked) — followed by ``git update-ref --stdin`` creating the same refs
in one transaction. Goal: at most 2x.

Then, one run each, pushing every robot's ref to an empty bare server: plain ``git push`` of one
wildcard refspec (the floor), then ``git pack-refs --all`` on that server; the controller's
:func:`controller.reconcile.source.publish` to a local repository (the same wildcard,
``--atomic`` with the state branch under a lease, then ``git pack-refs --all`` on the server);
and ``publish`` over ``git://`` (a ``git daemon`` on loopback), where libgit2 pushes explicit
refspecs in one push — the path every non-local URL takes.

    python -m bench.controller_fanout [--robots 10000] [--runs 3] [--no-push]
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pygit2

from bench import fleetgen
from bench.common import base_parser, table, write_results
from bench.controller_world import RELEASES, SERIAL, controller_write, make_bundles
from controller.delivery import CONTROLLER_IDENTITY, delivery_ref
from controller.reconcile.source import Source, publish
from fleetcd.desired import BUNDLE_FILE, PROOF_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE
from fleetcd.desired.chain import TRUST_FILE
from fleetcd.git import refs
from fleetcd.git.objects import commit, list_refs, read_blob, ref_target, write_tree
from fleetcd.git.refs import STATE_BRANCH
from fleetcd.trust.gpg import Signer
from tests.sim.world import START

NAME = "controller_fanout"
DEFAULT_ROBOTS = 10_000
DEFAULT_RUNS = 3
GOAL_RATIO = 2.0
SCRATCH_REF = "refs/fleetcd/bench-scratch"
FILES = (BUNDLE_FILE, PROOF_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE, TRUST_FILE)  # every file of the commit


def _data(payload: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(payload), payload)


def fast_import_stream(repo_path: Path, devices: list[str]) -> tuple[bytes, dict[str, str], dict[int, str]]:
    """(stream, ref → commit id the controller wrote, commit mark → ref), from the controller's bytes.

    Each blob once (the root and its signature are shared by every robot, as in the controller's
    pack); each commit on a scratch branch reset before it, so it has no parent.
    """
    repo = pygit2.Repository(str(repo_path))
    who = f"{CONTROLLER_IDENTITY.name} <{CONTROLLER_IDENTITY.email}> {int(START.timestamp())} +0000".encode()
    blobs: dict[bytes, int] = {}
    chunks: list[bytes] = []
    written: dict[str, str] = {}
    marks: dict[int, str] = {}
    for device in devices:
        ref = delivery_ref(device, namespaces=True)
        written[ref] = str(repo.references[ref].target)
        entries = []
        for name in FILES:
            payload = read_blob(repo, ref, name) or b""
            key = hashlib.sha256(payload).digest()
            if key not in blobs:
                blobs[key] = len(blobs) + 1
                chunks.append(b"blob\nmark :%d\n%s" % (blobs[key], _data(payload)))
            entries.append(b"M 100644 :%d %s\n" % (blobs[key], name.encode()))
        mark = 1_000_000 + len(marks)
        marks[mark] = ref
        message = f"fleetcd: desired state of {device}, serial {SERIAL}\n".encode()
        scratch = SCRATCH_REF.encode()
        chunks.append(b"reset %s\ncommit %s\nmark :%d\n" % (scratch, scratch, mark))
        chunks.append(b"author %s\ncommitter %s\n%s%s\n" % (who, who, _data(message), b"".join(entries)))
    return b"".join(chunks), written, marks


def git_write(path: Path, stream: bytes, marks: dict[int, str]) -> tuple[float, dict[str, str]]:
    """fast-import the objects, then create every ref in one ``update-ref --stdin`` transaction."""
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    marks_file = path / "bench-marks"
    start = time.perf_counter()
    fast_import = ["git", "-C", str(path), "fast-import", "--quiet", f"--export-marks={marks_file}"]
    subprocess.run(fast_import, input=stream, check=True)
    ids = {}
    for line in marks_file.read_text().splitlines():
        mark, oid = line.split()
        ref = marks.get(int(mark.lstrip(":")))
        if ref is not None:
            ids[ref] = oid
    updates = "".join(f"create {ref} {oid}\n" for ref, oid in sorted(ids.items())) + f"delete {SCRATCH_REF}\n"
    subprocess.run(["git", "-C", str(path), "update-ref", "--stdin"], input=updates.encode(), check=True)
    return time.perf_counter() - start, ids


def push_times(repo_path: Path, root: Path) -> dict[str, float]:
    """Seconds to push every desired ref (and a state branch) to an empty server, each way once."""
    repo = pygit2.Repository(str(repo_path))
    desired = list_refs(repo, refs.NAMESPACES_PREFIX)
    state = commit(repo, STATE_BRANCH, write_tree(repo, {}), "bench state", [], CONTROLLER_IDENTITY, START)
    out: dict[str, float] = {"refs": len(desired)}
    for how in ("git_push_one_wildcard_refspec", "publish_local", "publish_git_daemon"):
        server = root / "served" / f"{how}.git"
        subprocess.run(["git", "init", "-q", "--bare", str(server)], check=True)
        with _daemon(root / "served") if how == "publish_git_daemon" else nullcontext(0) as port:
            start = time.perf_counter()
            if how == "git_push_one_wildcard_refspec":
                spec = f"+{refs.NAMESPACES_PREFIX}*:{refs.NAMESPACES_PREFIX}*"
                subprocess.run(
                    ["git", "--git-dir", str(repo_path), "push", "-q", str(server), spec], check=True
                )
            else:
                url = f"git://127.0.0.1:{port}/{server.name}" if port else str(server)
                publish(repo, Source(url, repo_path), state_base=None, desired=desired)
            out[f"{how}_s"] = round(time.perf_counter() - start, 2)
        if how == "git_push_one_wildcard_refspec":
            start = time.perf_counter()
            subprocess.run(["git", "--git-dir", str(server), "pack-refs", "--all"], check=True)
            out["git_pack_refs_s"] = round(time.perf_counter() - start, 2)
        served = pygit2.Repository(str(server))
        if len(list_refs(served, refs.NAMESPACES_PREFIX)) != len(desired):
            raise RuntimeError(f"{how}: not every desired ref arrived")
        if how != "git_push_one_wildcard_refspec" and ref_target(served, STATE_BRANCH) != state:
            raise RuntimeError(f"{how}: the state branch did not arrive")
    return out


@contextmanager
def _daemon(base: Path) -> Iterator[int]:
    """``git daemon`` with pushes enabled on a free loopback port, serving ``base``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    argv = ["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", "--listen=127.0.0.1"]
    process = subprocess.Popen([*argv, f"--port={port}", f"--base-path={base}", str(base)])
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--robots", type=int, default=DEFAULT_ROBOTS)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed writes of each kind")
    parser.add_argument("--no-push", action="store_true", help="skip the push timings")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetcd-fanout-") as tmp:
        root = Path(tmp)
        home = root / "gnupg"
        home.mkdir(mode=0o700)
        start = time.perf_counter()
        fleet = fleetgen.generate(args.robots, RELEASES, home)
        bundles = make_bundles(fleet)
        setup_s = time.perf_counter() - start
        with Signer(home) as signer:

            def sign(data: bytes) -> bytes:
                return signer.sign_detached(data, fleet.fingerprint)

            paths = [root / f"controller-{i}.git" for i in range(args.runs)]
            controller_s = [controller_write(path, bundles, sign, namespaces=True) for path in paths]
        start = time.perf_counter()
        stream, written, marks = fast_import_stream(paths[-1], sorted(bundles))
        stream_s = time.perf_counter() - start
        git_s, same = [], True
        for i in range(args.runs):
            seconds, ids = git_write(root / f"git-{i}.git", stream, marks)
            git_s.append(seconds)
            same = same and ids == written
        pushes = {} if args.no_push else push_times(paths[-1], root)
    controller_median = sorted(controller_s)[len(controller_s) // 2]
    git_median = sorted(git_s)[len(git_s) // 2]
    ratio = round(controller_median / git_median, 2)
    lines = [f"desired-state write for {args.robots} robots (median of {args.runs}; goal <= {GOAL_RATIO}x)"]
    lines += table(
        ["writer", "median s", "runs s"],
        [
            [
                "controller write_desired_state",
                f"{controller_median:.2f}",
                " ".join(f"{t:.2f}" for t in controller_s),
            ],
            [
                "git fast-import + update-ref --stdin",
                f"{git_median:.2f}",
                " ".join(f"{t:.2f}" for t in git_s),
            ],
        ],
    )
    lines += [
        f"ratio {ratio}x; identical commit ids: {same}; stream {len(stream)} B, built in {stream_s:.2f} s"
    ]
    if pushes:
        lines += [
            f"push of all {pushes['refs']:.0f} refs to an empty bare server (one run): "
            f"git push, one wildcard refspec {pushes['git_push_one_wildcard_refspec_s']} s "
            f"(then git pack-refs --all {pushes['git_pack_refs_s']} s); "
            "controller publish, local (atomic wildcard + state lease + pack-refs) "
            f"{pushes['publish_local_s']} s; "
            f"controller publish over git:// (libgit2, explicit refspecs) {pushes['publish_git_daemon_s']} s"
        ]
    payload: dict[str, Any] = {
        "robots": args.robots,
        "runs": args.runs,
        "setup_s": round(setup_s, 1),
        "controller_s": [round(t, 3) for t in controller_s],
        "git_fast_import_update_ref_s": [round(t, 3) for t in git_s],
        "controller_median_s": round(controller_median, 3),
        "git_median_s": round(git_median, 3),
        "ratio": ratio,
        "goal_ratio": GOAL_RATIO,
        "goal_met": ratio <= GOAL_RATIO,
        "identical_commit_ids": same,
        "stream_bytes": len(stream),
        "push": pushes,
    }
    target = write_results(NAME, payload, lines, args.out)
    print("\n".join(lines))
    print(f"\nwritten: {target}")


if __name__ == "__main__":
    main()
