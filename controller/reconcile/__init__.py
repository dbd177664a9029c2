"""The reconcile loop: fetch → verify → load & validate → ingest → plan (pure) → write → notify."""
