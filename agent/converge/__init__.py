"""Agent steps 3–5, converge: make each app run what the verified desired state asks, crash-safely.

``machine`` decides (pure), ``apply`` acts on one app through the executor, hooks, gates and health
watch with a journal write before every step; ``desired`` supplies the verified desired state of a
cycle, ``status`` turns the journals into the report, ``configs`` and ``preflight`` are steps of
*applying*. The cycle around them is :mod:`agent.loop`.
"""
