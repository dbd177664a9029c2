"""Health of a freshly switched version: probes (exec, http, file) and the watch window.

``converge`` calls :func:`agent.health.watch.watch` after the switch; its verdict decides between
commit and roll back. Exec probes run through :mod:`agent.process`, the bounded command runner
they share with gates, pre-flight steps and executable hooks.
"""
