"""Reading and surgically editing the key lists of a trust root ``trust/root/<N>.yaml`` (pure text work).

``fleetcd keys generate`` must put new fingerprints into a file people wrote by hand, so it edits
only the value on each ``fingerprint:`` line it targets and leaves comments, order and quoting of
everything else alone. The lines come from the strict parser's line map, so an entry is found by
what it is (the key list entry whose ``name:`` is the role), not by guessing at text patterns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleetcd.errors import InvalidContent
from fleetcd.layout import FLEET_FILE
from fleetcd.loading.strict_yaml import ParsedYaml, field_path
from fleetcd.models import Fleet, TrustRoot
from fleetcd.reasons import Reason

FieldPath = tuple[str | int, ...]

# Development roles, in the order they are generated and printed. Each matches the ``name:`` of
# one entry in a key list of the trust root.
DEV_ROLES = ("root", "release-signer", "approver-1", "approver-2", "controller")
_KEY_LISTS: tuple[FieldPath, ...] = (
    ("root", "keys"),
    ("release_signers", "keys"),
    ("approvers",),
    ("controller",),
)
# The value after `fingerprint:`: a quoted string or a plain token (stops at a comment or flow end).
_FINGERPRINT_VALUE = re.compile(r"""(?P<key>\bfingerprint\s*:\s*)(?P<value>"[^"\n]*"|'[^'\n]*'|[^\s,}#]+)""")
# The template marks placeholder values; a rewritten line says where its key came from instead.
_PLACEHOLDER_NOTE = re.compile(r"#\s*placeholder\b.*$")
DEV_KEY_NOTE = "# development key (fleetcd keys generate)"


@dataclass(frozen=True)
class TrustedKey:
    """One fingerprint the fleet trusts (trust root or fleet.yaml's commit policy), with what for."""

    role: str  # root, release-signer, approver, controller, commit-signer
    name: str
    fingerprint: str


def trusted_keys(root: TrustRoot, fleet: Fleet | None = None) -> list[TrustedKey]:
    out = [TrustedKey("root", k.name, k.fingerprint) for k in root.root.keys]
    out += [TrustedKey("release-signer", k.name, k.fingerprint) for k in root.release_signers.keys]
    out += [TrustedKey("approver", k.name, k.fingerprint) for k in root.approvers]
    out += [TrustedKey("controller", k.name, k.fingerprint) for k in root.controller]
    if fleet is not None:
        out += [TrustedKey("commit-signer", k.name, k.fingerprint) for k in fleet.trust.commits.trusted]
    return out


def role_fingerprint_paths(
    data: Mapping[str, Any], roles: tuple[str, ...] = DEV_ROLES, *, file: str = FLEET_FILE
) -> dict[str, FieldPath]:
    """Where each role's fingerprint sits in the document; InvalidContent names the roles not found."""
    found: dict[str, FieldPath] = {}
    for list_path in _KEY_LISTS:
        for index, entry in enumerate(value_at(data, list_path) or []):
            name = entry.get("name") if isinstance(entry, dict) else None
            if name in roles and name not in found:
                found[name] = (*list_path, index, "fingerprint")
    missing = [r for r in roles if r not in found]
    if missing:
        raise InvalidContent.at(
            file,
            "no key entry named "
            + ", ".join(repr(r) for r in missing)
            + "; development keys are matched to entries by their `name:` (root under root.keys, "
            "release signer under release_signers.keys, approvers under approvers, controller under "
            "controller): add the entries with a placeholder fingerprint, or list real keys by hand",
            line=None,
            field=None,
            reason=Reason.UNKNOWN_REFERENCE,
        )
    return found


def rewrite_fingerprints(
    text: str, parsed: ParsedYaml, new: Mapping[FieldPath, str], *, file: str = FLEET_FILE
) -> str:
    """``text`` with the value at each ``fingerprint`` path replaced; every other byte is kept.

    The one exception: a trailing ``# placeholder`` note on a rewritten line becomes
    :data:`DEV_KEY_NOTE`, so a review of the file shows that these are development keys.
    """
    lines = text.splitlines(keepends=True)
    for path, fingerprint in new.items():
        line_no = parsed.lines.get(path)
        where = field_path(path)
        if line_no is None:
            raise InvalidContent.at(file, "no such field to rewrite", field=where)
        line = lines[line_no - 1]
        matches = list(_FINGERPRINT_VALUE.finditer(line))
        if len(matches) != 1:
            raise InvalidContent.at(
                file,
                "cannot rewrite this fingerprint in place: put each `fingerprint:` on a line of its own",
                line=line_no,
                field=where,
            )
        match = matches[0]
        # Always quoted: an all-digit fingerprint would otherwise read as a (huge) number.
        replacement = f'{match["key"]}"{fingerprint}"'
        rest = _PLACEHOLDER_NOTE.sub(DEV_KEY_NOTE, line[match.end() :])
        lines[line_no - 1] = line[: match.start()] + replacement + rest
    return "".join(lines)


def value_at(data: Mapping[str, Any], path: FieldPath) -> Any:
    """The value at ``path`` (mapping keys and list indexes), or None when absent."""
    node: Any = data
    for part in path:
        in_mapping = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_mapping or in_list):
            return None
        node = node[part]
    return node
