"""Agent steps 3–5, converge: make each app run what the verified desired state asks, crash-safely.

``machine`` and ``fallback`` decide (pure; ``fallback`` is the release's rollback policy),
``apply`` drives one app through them with a journal write before every step, ``steps`` does each
state's work (executor, hooks, gates, health watch) within the watchdog budget ``budgets`` derives,
``rollback`` is the state *rolling_back*, ``configs`` keeps config files with their version,
``preflight`` runs the release's pre-flight steps; ``context`` is what they share. The verified
desired state comes from :mod:`agent.sync.accept`, the journals become the report in
:mod:`agent.report.status`; the cycle around them is :mod:`agent.loop`.
"""
