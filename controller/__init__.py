"""fleetcd controller role: turns merged commits into per-robot desired state, records and audit.

It also provides the ``fleetcd`` console script (:mod:`controller.cli`), which is the core's operator
commands plus the controller's own. It never imports ``agent``.
"""
