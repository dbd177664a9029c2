"""Prometheus metrics of the controller: :mod:`.fleet` (pure: what a reconcile observed, as numbers),
:mod:`.exposition` (the prometheus_client registry, text format), :mod:`.serve` (``/metrics`` over
HTTP and the node_exporter textfile). docs/metrics.md lists every metric."""
