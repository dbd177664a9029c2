"""The fleet simulator (``fleetcd sim``): rehearse a rollout with N virtual robots before touching hardware.

Virtual robots follow the real agent protocol against a real fleet repository — each fetches its own
desired-state ref, verifies it with the real verifier and pushes real status reports to its own
status ref — while the real controller reconciles beside them on a shared, optionally virtual,
clock. Only the robots' converge step is simulated (apply time, failure and offline rates,
latency). Modules: ``settings`` (what to simulate), ``clock`` (event heap), ``model`` (records),
``wire`` and ``robot`` (the robot side, ``fleetcd`` imports only), ``verifier`` (one gpg check per
distinct signature), ``fleet`` (provisioning from main), ``control`` (the controller actor), ``run``
(the engine), ``report`` (per-wave timings and summary) and ``rehearsal`` (what ``fleetcd sim``
was asked, run in a scratch copy of the fleet); the CLI is :mod:`controller.cli.sim`.
"""

from controller.sim.report import SimReport, Summary, WaveTiming
from controller.sim.run import run_simulation
from controller.sim.settings import SimSettings, SimShard

__all__ = ["SimReport", "SimSettings", "SimShard", "Summary", "WaveTiming", "run_simulation"]
