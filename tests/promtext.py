"""Reading Prometheus text output in tests: real ``promtool check metrics``, then the samples by name.

:func:`check_metrics` runs Debian's promtool (the ``promtool`` fixture in tests/conftest.py) over the
text and fails the test with promtool's words if it finds a problem (a bad name, a missing HELP, a
counter without ``_total``...). :func:`samples` parses the same text with prometheus_client's parser
into ``{(name, ((label, value), ...)): value}`` so tests assert numbers, never the library's
wording.
"""

from __future__ import annotations

import subprocess

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, tuple[tuple[str, str], ...]]


def check_metrics(promtool: str, text: str) -> None:
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"promtool check metrics: {done.stdout}{done.stderr}\n{text}"


def samples(text: str) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found: dict[Key, float], name: str, **labels: str) -> float:
    """The sample ``name{labels}``; a KeyError names what is there when it is missing."""
    key = (name, tuple(sorted(labels.items())))
    if key not in found:
        near = sorted(k for k in found if k[0] == name)
        raise KeyError(f"{name}{labels} not in the output; {name} has {near}")
    return found[key]


def by_label(found: dict[Key, float], name: str, label: str, **fixed: str) -> dict[str, float]:
    """``{value of label: sample}`` for the samples of ``name`` whose other labels are ``fixed``."""
    out: dict[str, float] = {}
    for (sample, labels), number in found.items():
        mine = dict(labels)
        if sample == name and label in mine and all(mine.get(k) == v for k, v in fixed.items()):
            out[mine[label]] = number
    return out
