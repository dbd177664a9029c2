"""Health of a freshly switched version: probes (exec, http, file) and the watch window.

``converge`` calls :func:`agent.health.watch.watch` after the switch; its verdict decides between
commit and roll back. :mod:`agent.health.process` is the bounded subprocess runner that probes,
gates and executable hooks share.
"""
