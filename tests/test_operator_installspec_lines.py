"""The CI requirements file ``fleetcd init`` writes (fleetcd/operator/installspec.py) from odd metadata.

``direct_url.json`` is whatever pip recorded from the install command someone typed (the requested
revision, the URL). The requirements file is read by pip line by line, so any value that reaches it
— the requirement, or the reason quoted in its comment — must stay on its own line: a line break in
a recorded value must never become a ``--index-url`` or ``--find-links`` line that sends every CI
run of the fleet to another package source.
"""

from __future__ import annotations

from typing import Any

import pytest

from fleetcd.errors import SetupError
from fleetcd.operator.installspec import (
    PLACEHOLDER_URL,
    RunningFleetcd,
    SpecSource,
    check_location,
    choose_install_spec,
    explicit_install_spec,
    render_requirements,
    with_pip_options,
)

GIT = "https://git.example.com/fleetcd.git"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
BREAKS = ["\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028"]


def option_lines(text: str) -> list[str]:
    """The lines pip would read as options or requirements (not comments, not blank)."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("brk", BREAKS, ids=[repr(b) for b in BREAKS])
def test_a_line_break_in_the_requested_revision_cannot_add_a_pip_option(brk: str) -> None:
    direct: dict[str, Any] = {
        "url": GIT,
        "vcs_info": {
            "vcs": "git",
            "commit_id": COMMIT,
            "requested_revision": f"v1{brk}--index-url https://evil.example/simple{brk}#",
        },
    }
    text = render_requirements(choose_install_spec(RunningFleetcd("0.2.0", direct)))
    assert option_lines(text) == [f"fleetcd @ git+{GIT}@{COMMIT}"]


@pytest.mark.parametrize("brk", BREAKS, ids=[repr(b) for b in BREAKS])
def test_a_line_break_in_a_local_install_url_cannot_add_a_pip_option(brk: str) -> None:
    direct = {"url": f"file:///home/op/fleetcd{brk}--find-links /tmp/evil{brk}#", "dir_info": {}}
    spec = choose_install_spec(RunningFleetcd("0.2.0", direct))
    assert spec.source is SpecSource.PLACEHOLDER
    assert option_lines(render_requirements(spec)) == [f"fleetcd @ {PLACEHOLDER_URL}"]


@pytest.mark.parametrize(
    "commit",
    [f"{COMMIT}\n--index-url https://evil.example/simple", f"{COMMIT} --no-deps", "abc def"],
    ids=["newline", "space-option", "space"],
)
def test_a_recorded_commit_that_is_not_one_token_becomes_the_placeholder(commit: str) -> None:
    direct = {"url": GIT, "vcs_info": {"vcs": "git", "commit_id": commit}}
    spec = choose_install_spec(RunningFleetcd("0.2.0", direct))
    assert spec.source is SpecSource.PLACEHOLDER
    assert option_lines(render_requirements(spec)) == [f"fleetcd @ {PLACEHOLDER_URL}"]


@pytest.mark.parametrize(
    "spec",
    [
        "fleetcd==0.2.0\n--index-url https://evil.example/simple",
        "fleetcd\n==0.2.0",
        "requests==2.0",
        "fleetcd",
        "fleetcd @ /opt/x.whl",
        "",
    ],
    ids=["smuggled-line", "newline-between-tokens", "another-package", "unpinned", "path-not-url", "empty"],
)
def test_an_install_spec_option_ci_could_not_use_safely_is_refused(spec: str) -> None:
    with pytest.raises(SetupError, match="install spec"):
        explicit_install_spec(spec)


@pytest.mark.parametrize(
    "value", ["--trusted-host evil", "https://a b", "", "-e ."], ids=["option", "space", "empty", "editable"]
)
def test_an_index_or_find_links_value_that_is_not_one_location_is_refused(value: str) -> None:
    with pytest.raises(SetupError):
        check_location("--index-url", value)


def test_pip_options_each_get_their_own_line_above_the_requirement() -> None:
    spec = with_pip_options(
        explicit_install_spec("fleetcd==0.2.0"),
        index_url="https://pypi.internal.example/simple",
        find_links=("/opt/wheels", "/srv/wheels"),
        no_index=True,
    )
    assert option_lines(render_requirements(spec)) == [
        "--no-index",
        "--index-url https://pypi.internal.example/simple",
        "--find-links /opt/wheels",
        "--find-links /srv/wheels",
        "fleetcd==0.2.0",
    ]
