"""Writing YAML that the strict loader (and any YAML 1.1 reader) reads back as the same data.

Operator commands write documents people then review and robots read: ``fleetcd robot add``'s
device file and ``agent.yaml``. PyYAML's own dumper leaves ``1e3`` unquoted (a YAML 1.1 reader
takes it for a string, the strict loader refuses it as a number readers disagree on), so a robot
named ``1e3`` would get a file nothing can load. Here a string is written plain only when both the
strict loader and ``yaml.safe_load`` read it back as that string; otherwise it is double-quoted.
Pure: data in, text out.
"""

from __future__ import annotations

from typing import Any

import yaml

from fleetcd.errors import InvalidContent
from fleetcd.loading.strict_yaml import parse_strict


def plain_scalar_ok(text: str) -> bool:
    """True when ``text`` written unquoted reads back as this very string in every reader."""
    try:
        if yaml.safe_load(text) != text:
            return False
    except yaml.YAMLError:  # not YAML on its own ('@x', "'a", 'a: b: c'): it needs quotes
        return False
    try:
        data: object = parse_strict(f"v: {text}\n".encode(), "scalar").data
    except InvalidContent:
        return False
    return data == {"v": text}


class _Dumper(yaml.SafeDumper):
    """Block YAML whose strings are quoted exactly when a reader could take them for something else."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = None if plain_scalar_ok(text) else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    """``data`` as block YAML, keys in insertion order, strings quoted only where needed."""
    text: str = yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )
    return text
