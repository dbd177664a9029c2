"""Benchmark: bytes of a robot's no-op poll of desired state the controller wrote, 10 vs 10,000 robots.

:mod:`bench.git_poll_bytes` measures the transport on tiny synthetic commits; this runs the same
measurements (imported from it) on what the controller actually writes: every robot's bundle,
proof, root and signature (:func:`controller.delivery.write_desired_state`), in the flat layout
and in per-robot namespaces (the controller's default), refs packed as on a real server after gc.
For each size: the bytes the server advertises before negotiation, and the bytes of a real no-op
poll of one robot's ref through a byte-counting proxy in front of ``git daemon`` — pygit2 (v0) and
the git CLI (v2) on the flat layout, and pygit2 against a daemon serving ``GIT_NAMESPACE=<robot>``,
as a per-robot SSH forced command would. Goal for the namespaced poll: at most 1.5x.

    python -m bench.controller_poll [--sizes 10 10000] [--runs 5]
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.common import base_parser, table, write_results
from bench.controller_world import controller_write, signed_fleet
from bench.git_poll_bytes import advertisement_bytes, no_op_polls
from fleetcd.desired import Bundle

NAME = "controller_poll"
DEFAULT_SIZES = (10, 10_000)
DEFAULT_RUNS = 5
GOAL_RATIO = 1.5
GOAL_METHOD = "pygit2_v0_git_namespace"


def run_size(
    base: Path, bundles: Mapping[str, Bundle], sign: Callable[[bytes], bytes], runs: int
) -> dict[str, Any]:
    """Advertisement and no-op poll bytes of the first robot on controller-written repositories."""
    base.mkdir(parents=True)
    flat, namespaced = base / "flat.git", base / "namespaced.git"
    controller_write(namespaced, bundles, sign, namespaces=True)
    controller_write(flat, bundles, sign, namespaces=False)
    for repo in (flat, namespaced):
        subprocess.run(["git", "pack-refs", "--all"], cwd=repo, check=True)
    device = sorted(bundles)[0]
    return {
        "robots": len(bundles),
        "advertisement_bytes": advertisement_bytes(flat, namespaced, device),
        "no_op_poll": no_op_polls(base, flat, namespaced, device, runs),
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="robots per run")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed no-op polls per method")
    args = parser.parse_args()
    sizes = sorted(set(args.sizes))
    by_size: dict[int, dict[str, Any]] = {}
    with signed_fleet(sizes[-1], "fleetcd-poll-") as fleet:
        for n in sizes:
            by_size[n] = run_size(fleet.root / f"size-{n}", fleet.first(n), fleet.sign, args.runs)
    small, large = sizes[0], sizes[-1]

    def ratio(method: str) -> float:
        low = by_size[small]["no_op_poll"][method]["bytes_down"]
        return round(by_size[large]["no_op_poll"][method]["bytes_down"] / low, 2) if low else 0.0

    methods = list(by_size[large]["no_op_poll"])
    ratios = {m: ratio(m) for m in methods}
    lines = [
        f"no-op poll of one robot's ref on controller-written desired state; ratio = N={large} / N={small}"
    ]
    lines += table(
        ["method", *(f"N={n} bytes down/up, median" for n in sizes), "ratio"],
        [
            [
                m,
                *(
                    f"{p['bytes_down']}/{p['bytes_up']} B {p['median_s'] * 1000:.1f} ms"
                    for p in (by_size[n]["no_op_poll"][m] for n in sizes)
                ),
                ratios[m],
            ]
            for m in methods
        ],
    )
    lines += ["", "advertisement bytes (server → client, before negotiation)"]
    adverts = list(by_size[large]["advertisement_bytes"])
    lines += table(
        ["method", *(f"N={n}" for n in sizes)],
        [[k, *(by_size[n]["advertisement_bytes"][k] for n in sizes)] for k in adverts],
    )
    payload = {
        "sizes": sizes,
        "runs": args.runs,
        "results": {str(n): by_size[n] for n in sizes},
        "ratios": ratios,
        "goal_method": GOAL_METHOD,
        "goal_ratio": GOAL_RATIO,
        "goal_met": ratios[GOAL_METHOD] <= GOAL_RATIO,
    }
    target = write_results(NAME, payload, lines, args.out)
    print("\n".join(lines))
    print(f"\nwritten: {target}")


if __name__ == "__main__":
    main()
