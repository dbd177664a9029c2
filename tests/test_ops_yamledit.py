"""``pause``/``resume``/``rollback``/``retire``/``enrol`` edit one line of a file people review.

Checked by meaning, with a real YAML parser: after the edit the document loads to the same data
with only the one key changed, and the diff is that one line (or one appended line). A layout a
line edit cannot change safely is refused, never turned into a second, duplicate key.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from controller.ops.yamledit import UneditableYaml, append_list_item, set_scalar


def loads(text: str) -> Any:
    return yaml.safe_load(text)


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    old, new = before.splitlines(), after.splitlines()
    assert len(new) in (len(old), len(old) + 1)
    pairs = [(a, b) for a, b in zip(old, new, strict=False) if a != b]
    return pairs + ([("", new[-1])] if len(new) > len(old) else [])


SCALAR_LAYOUTS = [
    pytest.param('release: "1.2.0"\npaused: false\n', "release", "1.1.0", id="plain"),
    pytest.param('release: "1.2.0"  # was 1.1.0 # twice\n', "release", "1.1.0", id="comment-with-hash"),
    pytest.param('release: "1.2.0#rc"\n', "release", "1.1.0", id="hash-inside-double-quotes"),
    pytest.param("release: '1.2.0 #rc'  # note\n", "release", "1.1.0", id="space-hash-inside-single-quotes"),
    pytest.param('"release": "1.2.0"\n', "release", "1.1.0", id="quoted-key"),
    pytest.param('release : "1.2.0"\n', "release", "1.1.0", id="space-before-colon"),
    pytest.param(
        'name: x\nnotes: |\n  release: "9.9.9"\nrelease: "1.2.0"\n', "release", "1.1.0", id="in-block-scalar"
    ),
    pytest.param('# release: "0.0.1"\nrelease: "1.2.0"\n', "release", "1.1.0", id="commented-out-line"),
    pytest.param('release_notes: x\nrelease: "1.2.0"\n', "release", "1.1.0", id="longer-key-beside"),
    pytest.param('release: "1.2.0"', "release", "1.1.0", id="no-final-newline"),
    pytest.param('release: "1.2.0"\r\npaused: false\r\n', "release", "1.1.0", id="crlf"),
    pytest.param("paused: false\n", "paused", "true", id="bool"),
    pytest.param("name: x\n", "paused", "true", id="missing-key-appended"),
]


@pytest.mark.parametrize(("text", "key", "value"), SCALAR_LAYOUTS)
def test_setting_a_scalar_changes_that_value_and_one_line_only(text: str, key: str, value: str) -> None:
    after = set_scalar(text, key, value, quote_like_before=True)
    expected = {**loads(text), key: loads(f"v: {value}")["v"]}
    assert loads(after) == expected
    assert len(changed_lines(text, after)) == 1
    top_level = [line for line in after.splitlines() if re.match(rf"[\"']?{key}[\"']?\s*:", line)]
    assert len(top_level) == 1  # PyYAML would quietly keep the last of two: the strict loader refuses


def test_quoting_is_kept_so_a_version_stays_a_string() -> None:
    # unquoted, 1.10 would load as the float 1.1
    after = set_scalar('release: "1.2"\n', "release", "1.10", quote_like_before=True)
    assert loads(after) == {"release": "1.10"}


@pytest.mark.parametrize(
    "text",
    [
        "release:\n  '1.2.0'\n",
        "release: >\n  1.2.0\n",
        "release: !!str 1.2.0\n",
        "release: *anchor\n",
        "release: [1]\n",
        "release: {a: 1}\n",
        'release: "1.2.0"\nrelease: "1.3.0"\n',
    ],
    ids=["next-line", "folded", "tag", "alias", "flow-list", "flow-map", "duplicate"],
)
def test_a_value_a_line_edit_cannot_change_safely_is_refused(text: str) -> None:
    with pytest.raises(UneditableYaml):
        set_scalar(text, "release", "1.1.0")


def test_a_key_line_the_pattern_cannot_read_is_refused_not_appended_again() -> None:
    # `1.2.0#rc` is one plain scalar to YAML, but no line this edit reads; appending used to give
    # a second top-level `release:` (the strict loader then refused the file as a duplicate key)
    text = "release: 1.2.0#rc\n"
    assert loads(text) == {"release": "1.2.0#rc"}
    with pytest.raises(UneditableYaml):
        set_scalar(text, "release", "1.1.0")


def test_a_missing_key_is_appended_after_its_comment_lines() -> None:
    after = set_scalar("name: amr-1\n", "decommissioned", "true", comment="retired by ops\n\nticket 42")
    assert after == "name: amr-1\n# retired by ops\n#\n# ticket 42\ndecommissioned: true\n"
    assert loads(after) == {"name": "amr-1", "decommissioned": True}


# --- appending to a list (enrol adds a robot to a cohort) -------------------------------------------

LIST_LAYOUTS = [
    pytest.param("devices: [a, b]\nname: c\n", id="flow"),
    pytest.param("devices: []\n", id="empty-flow"),
    pytest.param("devices: [a]  # robots\n", id="flow-with-comment"),
    pytest.param("devices:\n  - a\n  - b\nname: c\n", id="block-indented"),
    pytest.param("devices:\n- a\n- b\n", id="block-flush"),
    pytest.param(
        "devices:\n  - a\n  # - old (retired)\n\n  - b\n\n# trailing note\nname: c\n", id="comments-inside"
    ),
    pytest.param("devices:\n  - a\n  - b", id="no-final-newline"),
    pytest.param("devices:\r\n  - a\r\n", id="crlf"),
]


@pytest.mark.parametrize("text", LIST_LAYOUTS)
def test_appending_adds_one_item_and_changes_nothing_else(text: str) -> None:
    after = append_list_item(text, "devices", "amr-new")
    before = loads(text)
    assert loads(after) == {**before, "devices": [*before["devices"], "amr-new"]}


def test_a_block_entry_lands_right_after_the_last_entry_before_a_trailing_comment() -> None:
    text = "devices:\n  - a\n\n# staging only\nname: c\n"
    assert append_list_item(text, "devices", "b") == "devices:\n  - a\n  - b\n\n# staging only\nname: c\n"


@pytest.mark.parametrize(
    "text",
    [
        "devices: a\n",
        "name: c\n",
        "devices:\n  a: 1\n",
        "devices:\nname: c\n",
        "devices: [a]\ndevices: [b]\n",
    ],
    ids=["scalar", "missing", "mapping", "null", "duplicate"],
)
def test_a_list_that_is_not_a_list_is_refused(text: str) -> None:
    with pytest.raises(UneditableYaml):
        append_list_item(text, "devices", "amr-new")
