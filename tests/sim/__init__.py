"""The tests' fleet simulator: one set of builders for the controller, agent, fault and bench worlds.

Like python-tuf's ``RepositorySimulator``, every test that needs a fleet builds it from the same
pieces, each a real thing — real git, real gpg, the real controller and the real agent:

- :mod:`tests.fleetrepo` — the fleet repository builder: keys, devices, cohorts, signed releases,
  approved rollouts (``FleetRepoBuilder``; ``bench.fleetgen`` generates the benchmarks' large fleets).
- :mod:`tests.sim.world` — a bare server, the real controller on a virtual clock
  (:meth:`ControllerWorld.reconcile`) and the scenario fleet (1 staging, 3 canary, 4 production
  robots, nav 1.0.0 in three waves) built by :func:`make_world`.
- :mod:`tests.sim.robots` — simulated robots: each verifies its own desired state with the real
  verifier and pushes real status commits to its own status ref (one robot at a time, or a whole
  fleet in one pack for the benchmarks); only the converge step is made up.
- :mod:`tests.sim.provision` — what a real robot is provisioned with (pinned anchors, ``keys_dir``,
  ``agent.yaml``) over a controller world (:func:`provisioned_fleet`).
- :mod:`tests.sim.agent` — one real agent converging real apps from a world the controller writes
  (:class:`AgentWorld`); :mod:`tests.sim.multiapp` — the same robot running two apps, each rolled
  out in its own waves (:class:`MultiAppWorld`), both on :class:`tests.sim.agent.RealRobot`.
- :mod:`tests.sim.engine` — the pure rollout engine driven tick by tick, no git and no gpg
  (``test_engine_*``).

Nothing is imported here, so a benchmark that needs only the robots does not load the agent.
"""
