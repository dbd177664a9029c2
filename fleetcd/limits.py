"""Size caps shared by the loaders (:mod:`fleetcd.loading`) and the git readers (:mod:`fleetcd.git`).

It sits below both and imports nothing from fleetcd, so git plumbing need not import the loaders to
know how much of a blob to read.
"""

from __future__ import annotations

MAX_DOCUMENT_BYTES = 1 * 1024 * 1024  # one repository YAML file; checked before any parsing
# Files over the YAML cap are read only this far: enough for the loader to report them as too large.
READ_CAP_BYTES = MAX_DOCUMENT_BYTES + 1
