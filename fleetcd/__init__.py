"""fleetcd shared core: models, strict loading, schemas, signatures, git plumbing and planning.

Both roles build on this package: ``controller`` (operators, CI, the reconcile loop) and ``agent``
(one per robot). It imports neither of them; a test enforces that layering.
"""

__version__ = "0.1.0"
