"""Operator commands of the controller: look at what it observed, and write the commits people write.

Read side (``get``, ``history``, ``receipt``): fetch main and the state branch into the local
mirror (:mod:`controller.ops.remote`) and turn them into rows (:mod:`controller.ops.listing`,
:mod:`controller.ops.history`) or a verified receipt (:mod:`controller.ops.receipt`), printed by
:mod:`controller.ops.output`. Write side (``pause``, ``resume``, ``rollback``, ``deploy``): edit a
local fleet work tree the way a person would (:mod:`controller.ops.switches`,
:mod:`controller.ops.deploy`), validate in memory, then commit (:mod:`controller.ops.local`); the
controller picks the commit up like any other merge. The click wrappers live in
``controller.cli.read`` and ``controller.cli.edit``.
"""
