"""``fleetcd demo``: the whole story on a throwaway fleet (:mod:`controller.demo.story` tells it)."""

from controller.demo.story import run_demo

__all__ = ["run_demo"]
