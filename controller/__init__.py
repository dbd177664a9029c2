"""fleetcd controller role: turns merged commits into per-robot desired state, records and audit.

It also provides the ``fleetcd`` console script (:mod:`controller.cli`, every command of it: the
operator and CI commands on the shared core plus the controller's own). It never imports ``agent``.
"""
