"""Benchmark: what one robot's no-op poll of its own desired-state ref costs as the fleet grows.

DESIGN §4 asks for a poll that costs the same at 10 robots as at 10,000. For each fleet size this
builds a bare repository holding one tiny commit per robot under ``refs/fleetcd/desired/<id>``
(refs packed, as on a real server) and a second one with the same commits in per-robot namespaces
(``refs/namespaces/<id>/refs/fleetcd/desired/<id>``). Then it measures:

* **Advertisement bytes** — what the server writes before any negotiation: ``git upload-pack
  --advertise-refs`` (protocol v0, what libgit2/pygit2 always gets), the same with
  ``GIT_NAMESPACE=<id>``, and protocol v2 (capabilities plus an ``ls-refs`` answer to
  ``ref-prefix refs/fleetcd/desired/<id>``).
* **Wire bytes of a real no-op poll** — a robot that already has its commit fetches again through
  a byte-counting TCP proxy in front of ``git daemon``: (a) pygit2 fetch of one refspec (v0),
  (b) the git CLI with protocol v2 (``fleetcd.git.remote.fetch_own_ref_cli``), (c) pygit2 against a
  daemon that serves ``GIT_NAMESPACE=<id>`` (how a per-robot SSH forced command would serve it).

Reported per method: bytes at every size, the ratio largest/smallest, and the median poll time.

    python -m bench.git_poll_bytes [--sizes 10 10000] [--runs 5]
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2

from bench.common import (
    base_parser,
    free_port,
    git_exec_path,
    measure,
    rusage_logging_git,
    start_listener,
    table,
    write_results,
)
from fleetcd.compat import UTC
from fleetcd.git import refs
from fleetcd.git.objects import Identity, commit, object_batch, update_refs, write_tree
from fleetcd.git.remote import fetch, fetch_own_ref_cli

NAME = "git_poll_bytes"
DEFAULT_SIZES = (10, 10_000)
DEFAULT_RUNS = 5
WHEN = datetime(2024, 1, 1, tzinfo=UTC)
AUTHOR = Identity("fleetcd controller", "controller@fleet.test")
SETTLE_TIMEOUT_S = 5.0
UPSTREAM_CONNECT_S = 5.0  # how long the counting proxy retries a refused connection to the daemon


def device_id(n: int) -> str:
    return f"dev-{n:05d}"


def build_repos(root: Path, count: int) -> tuple[Path, Path]:
    """(flat, namespaced) bare repositories with ``count`` robots' desired-state commits each."""
    paths = []
    for layout in ("flat", "namespaced"):
        path = root / f"{layout}.git"
        repo = pygit2.init_repository(str(path), bare=True)
        updates: dict[str, tuple[pygit2.Oid | None, pygit2.Oid]] = {}
        with object_batch(repo) as staged:
            for n in range(1, count + 1):
                device = device_id(n)
                tree = write_tree(staged, {"bundle.yaml": f"device: {device}\nserial: 1\n".encode()})
                oid = commit(staged, None, tree, f"desired state for {device}", [], AUTHOR, WHEN)
                ref = refs.desired_ref(device)
                updates[refs.namespaced(device, ref) if layout == "namespaced" else ref] = (None, oid)
        update_refs(repo, updates)
        subprocess.run(["git", "pack-refs", "--all"], cwd=path, check=True)
        paths.append(path)
    return paths[0], paths[1]


def _pkt(line: str) -> bytes:
    data = line.encode()
    return f"{len(data) + 4:04x}".encode() + data


def advertisement_bytes(flat: Path, namespaced: Path, device: str) -> dict[str, int]:
    """Bytes the server writes before negotiation, for each way of asking."""

    def upload_pack(repo: Path, *args: str, env: dict[str, str] | None = None, stdin: bytes = b"") -> int:
        done = subprocess.run(
            ["git", "upload-pack", *args, str(repo)],
            env={**os.environ, **(env or {})},
            input=stdin,
            capture_output=True,
            check=True,
        )
        return len(done.stdout)

    v2 = {"GIT_PROTOCOL": "version=2"}
    ls_refs = b"".join(
        [
            _pkt("command=ls-refs\n"),
            _pkt("object-format=sha1\n"),
            b"0001",
            _pkt("peel\n"),
            _pkt("symrefs\n"),
            _pkt(f"ref-prefix {refs.desired_ref(device)}\n"),
            b"0000",
        ]
    )
    v2_caps = upload_pack(flat, "--advertise-refs", env=v2)
    v2_ls = upload_pack(flat, "--stateless-rpc", env=v2, stdin=ls_refs)
    return {
        "v0_full_advertisement": upload_pack(flat, "--advertise-refs"),
        "v0_git_namespace": upload_pack(namespaced, "--advertise-refs", env={"GIT_NAMESPACE": device}),
        "v2_caps_plus_ls_refs_prefix": v2_caps + v2_ls,
    }


class CountingProxy:
    """A TCP proxy on loopback that counts the bytes flowing each way."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.down = 0
        self.up = 0
        self.active = 0
        self.server_pid = 0  # the serving process, when the caller started one (git_daemon)
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = self._upstream()
            if upstream is None:
                client.close()  # the poll fails and says so; the proxy keeps serving
                continue
            pair = [client, upstream]
            for src, dst, downstream in ((client, upstream, False), (upstream, client, True)):
                with self.lock:
                    self.active += 1
                args = (src, dst, downstream, pair)
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _upstream(self) -> socket.socket | None:
        # A daemon busy with many upload-packs on a loaded 2-core machine can refuse for a moment.
        deadline = time.monotonic() + UPSTREAM_CONNECT_S
        while True:
            try:
                return socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.05)

    def _pump(
        self, src: socket.socket, dst: socket.socket, downstream: bool, pair: list[socket.socket]
    ) -> None:
        try:
            while chunk := src.recv(65536):
                with self.lock:
                    if downstream:
                        self.down += len(chunk)
                    else:
                        self.up += len(chunk)
                try:
                    dst.sendall(chunk)
                except OSError:
                    # The other side is gone (upload-pack exits without reading the client's last
                    # flush): keep reading until EOF, so closing never resets a client still reading.
                    while src.recv(65536):
                        pass
                    break
        except OSError:
            pass
        finally:
            with suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with self.lock:
                self.active -= 1
                pair.remove(src)
                last = not pair
            if last:  # both directions done: close now, not at garbage collection, so the
                # daemon's upload-pack exits and its connection slot (--max-connections) frees up
                src.close()
                dst.close()

    def take(self) -> tuple[int, int]:
        """(bytes to the client, bytes from the client) since the last call, once connections end."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while self.active and time.monotonic() < deadline:
            time.sleep(0.005)
        with self.lock:
            counts = (self.down, self.up)
            self.down = self.up = 0
        return counts

    def close(self) -> None:
        self.listener.close()


@contextmanager
def git_daemon(
    base: Path,
    env: dict[str, str] | None = None,
    *,
    receive_pack: bool = False,
    cpu_log: Path | None = None,
) -> Iterator[CountingProxy]:
    """``git daemon`` serving ``base`` on loopback, reached through a counting proxy.

    ``receive_pack`` also accepts pushes. With ``cpu_log``, every service process the daemon starts
    logs its CPU there (:func:`bench.common.rusage_logging_git`); ``proxy.server_pid`` is the
    daemon's pid (:func:`bench.common.wait_reaped` waits until a connection's processes are done).
    """
    if cpu_log is not None:
        env = {**(env or {}), **rusage_logging_git(cpu_log.parent / "bin", cpu_log)}
    port = free_port()
    argv = [str(git_exec_path() / "git-daemon"), "--reuseaddr", "--export-all",
            *(["--enable=receive-pack"] if receive_pack else []),
            "--listen=127.0.0.1", f"--port={port}", f"--base-path={base}", str(base)]  # fmt: skip
    daemon = start_listener(argv, port, env={**os.environ, **(env or {})})
    proxy = CountingProxy(port)
    proxy.server_pid = daemon.pid
    try:
        yield proxy
    finally:
        proxy.close()
        daemon.terminate()
        daemon.wait(timeout=10)


def measure_poll(proxy: CountingProxy, poll: Callable[[], object], runs: int) -> dict[str, Any]:
    poll()  # the first fetch brings the commit; every later one is the no-op poll we care about
    proxy.take()
    poll()
    down, up = proxy.take()
    timing = measure(poll, runs=runs, warmups=0)
    proxy.take()
    return {"bytes_down": down, "bytes_up": up, "median_s": round(timing.median_s, 6)}


def run_size(root: Path, count: int, runs: int) -> dict[str, Any]:
    flat, namespaced = build_repos(root, count)
    device = device_id(1)
    return {
        "refs": count,
        "advertisement_bytes": advertisement_bytes(flat, namespaced, device),
        "no_op_poll": no_op_polls(root, flat, namespaced, device, runs),
    }


def no_op_polls(base: Path, flat: Path, namespaced: Path, device: str, runs: int) -> dict[str, Any]:
    """``device``'s no-op poll of its desired ref, per method: pygit2 and the git CLI against the
    flat repository, pygit2 against the namespaced one under ``GIT_NAMESPACE`` (both in ``base``)."""
    ref = refs.desired_ref(device)
    spec = [f"+{ref}:{ref}"]
    polls: dict[str, Any] = {}
    traced: list[int] = []

    def robot(name: str) -> pygit2.Repository:
        return pygit2.init_repository(str(base / "robots" / name), bare=True)

    with git_daemon(base) as proxy:
        url = f"git://127.0.0.1:{proxy.port}/{flat.name}"
        pygit2_robot = robot("pygit2")
        polls["pygit2_v0"] = measure_poll(proxy, lambda: fetch(pygit2_robot, url, spec), runs)
        cli_robot = Path(robot("cli").path)
        polls["git_cli_v2"] = measure_poll(
            proxy, lambda: traced.append(fetch_own_ref_cli(url, ref, git_dir=cli_robot)[1]), runs
        )
        polls["git_cli_v2"]["traced_bytes_received"] = traced[-1]
    with git_daemon(base, env={"GIT_NAMESPACE": device}) as proxy:
        url = f"git://127.0.0.1:{proxy.port}/{namespaced.name}"
        ns_robot = robot("pygit2-namespace")
        polls["pygit2_v0_git_namespace"] = measure_poll(proxy, lambda: fetch(ns_robot, url, spec), runs)
    return polls


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="robots per run")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed no-op polls per method")
    args = parser.parse_args()
    sizes = sorted(set(args.sizes))
    by_size: dict[int, dict[str, Any]] = {}
    for count in sizes:
        with tempfile.TemporaryDirectory(prefix=f"fleetcd-poll-{count}-") as tmp:
            by_size[count] = run_size(Path(tmp), count, args.runs)
    small, large = sizes[0], sizes[-1]

    def ratio(*path: str) -> float:
        def pick(result: dict[str, Any]) -> int:
            value: Any = result
            for key in path:
                value = value[key]
            return int(value)

        smallest = pick(by_size[small])
        return round(pick(by_size[large]) / smallest, 2) if smallest else 0.0

    adverts = list(by_size[small]["advertisement_bytes"])
    methods = list(by_size[small]["no_op_poll"])
    ratios = {f"advertisement/{k}": ratio("advertisement_bytes", k) for k in adverts}
    ratios |= {f"poll/{k}": ratio("no_op_poll", k, "bytes_down") for k in methods}
    sizes_header = [f"N={n}" for n in sizes]
    lines = [f"advertisement bytes (server → client, before negotiation); ratio = N={large} / N={small}"]
    lines += table(
        ["method", *sizes_header, "ratio"],
        [
            [k, *(by_size[n]["advertisement_bytes"][k] for n in sizes), ratios[f"advertisement/{k}"]]
            for k in adverts
        ],
    )
    lines += ["", "no-op poll of the robot's own ref over git:// (bytes down/up; median wall time)"]
    lines += table(
        ["method", *sizes_header, "ratio"],
        [
            [
                k,
                *(
                    f"{p['bytes_down']}/{p['bytes_up']} B {p['median_s'] * 1000:.1f} ms"
                    for p in (by_size[n]["no_op_poll"][k] for n in sizes)
                ),
                ratios[f"poll/{k}"],
            ]
            for k in methods
        ],
    )
    payload = {
        "sizes": sizes,
        "runs": args.runs,
        "results": {str(n): by_size[n] for n in sizes},
        "ratios": ratios,
    }
    target = write_results(NAME, payload, lines, args.out)
    print("\n".join(lines))
    print(f"\nwritten: {target}")


if __name__ == "__main__":
    main()
