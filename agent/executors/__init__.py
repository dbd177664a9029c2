"""Executors by name (pre-commit's languages dict): agent.yaml's ``executor:`` picks one.

Each factory imports its module only when called, so a robot running tarballs never imports the
docker SDK (which may be missing there) and a broken container engine never stops a tarball robot.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.executors.base import AppTarget, Executor, ExecutorContext, RunState
from fleetcd.errors import SetupError
from fleetcd.models.agent import AgentConfig

__all__ = ["EXECUTORS", "AppTarget", "Executor", "ExecutorContext", "RunState", "make_executor"]

ExecutorFactory = Callable[[ExecutorContext, AgentConfig], Executor]


def _tarball(ctx: ExecutorContext, config: AgentConfig) -> Executor:
    from agent.executors.tarball import TarballExecutor

    return TarballExecutor(ctx, config)


def _docker(ctx: ExecutorContext, config: AgentConfig) -> Executor:
    try:
        from agent.executors.docker import DockerExecutor
    except ImportError as exc:  # the docker SDK is an optional dependency of robots
        raise SetupError(f"executor 'docker' (agent.yaml) needs the docker Python SDK: {exc}") from exc
    return DockerExecutor(ctx, config)


EXECUTORS: dict[str, ExecutorFactory] = {"tarball": _tarball, "docker": _docker}


def make_executor(name: str, ctx: ExecutorContext, config: AgentConfig) -> Executor:
    """The executor registered as ``name``; SetupError naming the known ones otherwise."""
    factory = EXECUTORS.get(name)
    if factory is None:
        raise SetupError(f"executor {name!r} (agent.yaml) is not one of: {', '.join(sorted(EXECUTORS))}")
    return factory(ctx, config)
