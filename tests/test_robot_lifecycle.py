"""``fleetcd robot add|retire|rotate-key`` on a real fleet work tree and a real gitolite-admin checkout.

What is written (device file, cohort entry with its comments kept, the robot's folder with an
``agent.yaml`` the agent loads, a real ssh-keygen key, gitolite's key file and ``@robots``), and that
bad input (duplicate id, unknown cohort, bad id, a key another robot has) is refused with the file
named and nothing written. tests/test_robot_gitolite.py runs the same commands against the server.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.cli import load_config
from controller.ops.gitolite import AdminCheckout, conf_with_robot, conf_without_robot, key_owner, robots_in
from controller.ops.local import WorkTree
from controller.ops.yamledit import UneditableYaml, append_list_item
from fleetcd.loading.documents import load_document
from fleetcd.models import Cohort, Device
from tests.clirun import fleetcd
from tests.fleetrepo import GIT_IDENTITY, FleetRepoBuilder
from tests.gpgkeys import KeyFactory
from tests.test_ops_switches import AUTHOR

HOST_PIN = "SHA256:" + "Q" * 43  # the server's key as `ssh-keygen -l -E sha256` prints it
STAGING_COHORT = """\
# yaml-language-server: $schema=https://fleetcd.dev/schemas/v1/cohort.json
# The Berlin test bay: reviewers, keep this short.
apiVersion: fleetcd.dev/v1
kind: Cohort
name: staging
stage: staging
devices:
  - amr-001   # the first robot
# robots above get every release first
"""
CONF = """\
repo gitolite-admin
    RW+     =   admin

@robots = amr-001 amr-002        # generated from devices/*.yaml

repo fleet
    RW+                             = fleetcd-controller
    R                               = @robots
    RW  refs/fleetcd/status/USER/   = @robots
"""


def _git(root: Path, *args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", **GIT_IDENTITY}
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True, env=env
    ).stdout


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_name(path.name + ".pub")


@pytest.fixture
def fleet(tmp_path: Path, keys: KeyFactory) -> FleetRepoBuilder:
    b = FleetRepoBuilder(tmp_path / "fleet", name="acme", keys=keys)  # a signed trust root to pin
    for robot in ("amr-001", "amr-002"):
        b.device(robot)
    b.file("cohorts/staging.yaml", STAGING_COHORT)
    b.cohort("production", stage="production", devices=[], selector={"sites": ["berlin"]})
    b.write()
    b.git_init()
    b.commit("two robots")
    return b


@pytest.fixture
def admin(tmp_path: Path) -> Path:
    root = tmp_path / "gitolite-admin"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "gitolite.conf").write_text(CONF)
    (root / "keydir").mkdir()
    for user in ("admin", "fleetcd-controller", "amr-001", "amr-002"):
        _keygen(tmp_path / f"{user}-key").replace(root / "keydir" / f"{user}.pub")
    _git(root, "init", "-q", "-b", "master")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "gitolite as docs/git-server.md sets it up")
    return root


def add(
    capsys: pytest.CaptureFixture[str], fleet: FleetRepoBuilder, admin: Path, robot: str, *extra: str
) -> tuple[int, str, str]:
    args = ["robot", "add", robot, "--repo", str(fleet.root), *AUTHOR, "--gitolite-admin", str(admin)]
    args += ["--site", "berlin", "--family", "amr", "--model", "mk2", "--revision", "3"]
    args += ["--url", "ssh://git@git.example.com/fleet", "--out", str(fleet.root.parent / "robots")]
    if "--cohort" not in extra:
        args += ["--cohort", "staging"]
    return fleetcd(capsys, *args, *extra)


def _unchanged(fleet: FleetRepoBuilder, admin: Path, heads: tuple[str, str]) -> None:
    assert (fleet.git("rev-parse", "HEAD"), _git(admin, "rev-parse", "HEAD")) == heads
    assert fleet.git("status", "--porcelain") == "" and _git(admin, "status", "--porcelain") == ""
    assert not any((fleet.root.parent / "robots").glob("*")), "no robot folder, not even a temporary one"


def _heads(fleet: FleetRepoBuilder, admin: Path) -> tuple[str, str]:
    return fleet.git("rev-parse", "HEAD"), _git(admin, "rev-parse", "HEAD")


def add_refused(
    capsys: pytest.CaptureFixture[str], fleet: FleetRepoBuilder, admin: Path, robot: str, *extra: str
) -> tuple[int, str]:
    """``robot add`` that must write nothing (neither repository moves, no robot folder is left):
    its exit code and what it said."""
    heads = _heads(fleet, admin)
    code, _, err = add(capsys, fleet, admin, robot, *extra)
    _unchanged(fleet, admin, heads)
    return code, err


# --- robot add ---------------------------------------------------------------------------------------


def test_an_enrolled_robot_gets_its_device_file_cohort_entry_agent_yaml_key_and_gitolite_access(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = add(
        capsys, fleet, admin, "amr-007", "--label", "dock=north", "--host-key-sha256", HOST_PIN
    )
    assert code == 0, err
    device = load_document("devices/amr-007.yaml", fleet.read("devices/amr-007.yaml"), Device).model
    assert (device.id, device.site, device.hardware.model, device.hardware.revision) == (
        "amr-007",
        "berlin",
        "mk2",
        3,
    )
    assert device.labels == {"dock": "north"} and not device.decommissioned
    cohort = fleet.read("cohorts/staging.yaml").decode()
    assert cohort == STAGING_COHORT.replace("# the first robot\n", "# the first robot\n  - amr-007\n")
    assert all("amr-007" not in str(d) for d in fleet.validate().errors)

    folder = fleet.root.parent / "robots" / "amr-007"
    config = load_config(folder / "agent.yaml")  # exactly as the agent on the robot reads it
    assert config.device == "amr-007"
    assert config.remote.ssh_key == "/etc/fleetcd/id_ed25519" and config.remote.host_key_sha256 == HOST_PIN
    assert config.trust.keys_dir == "/etc/fleetcd/keys" and config.trust.root.keys == [
        fleet.trust["root"]["keys"][0]["fingerprint"]
    ]
    assert (folder / "id_ed25519").stat().st_mode & 0o077 == 0, "the private key is the robot's alone"
    public = (folder / "id_ed25519.pub").read_text().split()[:2]
    assert (admin / "keydir" / "amr-007.pub").read_text().split()[:2] == public
    assert AdminCheckout.open(admin).key_files_of("amr-007") == ["keydir/amr-007.pub"]
    conf = (admin / "conf" / "gitolite.conf").read_text()
    assert "@robots = amr-001 amr-002 amr-007        # generated from devices/*.yaml\n" in conf
    assert fleet.git("log", "-1", "--format=%s") == "Enrol robot amr-007 in cohort staging"
    assert _git(admin, "log", "-1", "--format=%s").strip() == "Enrol robot amr-007 in cohort staging"
    assert fleet.git("status", "--porcelain") == "" and _git(admin, "status", "--porcelain") == ""
    assert "push it to apply" in out


def test_a_robot_brings_its_own_public_key_and_no_private_key_is_written(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    own = _keygen(tmp_path / "made-on-the-robot")
    code, _, err = add(capsys, fleet, admin, "amr-008", "--ssh-public-key", str(own))
    assert code == 0, err
    folder = fleet.root.parent / "robots" / "amr-008"
    assert not (folder / "id_ed25519").exists()
    assert (admin / "keydir" / "amr-008.pub").read_text().split()[:2] == own.read_text().split()[:2]


def test_a_selector_cohort_takes_a_matching_robot_without_an_edit(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = fleet.read("cohorts/production.yaml")
    code, _, err = add(capsys, fleet, admin, "amr-009", "--cohort", "production")
    assert code == 0, err
    assert fleet.read("cohorts/production.yaml") == before
    assert fleet.git("show", "--stat", "--format=", "HEAD").count("|") == 1  # only the device file


def test_enrolling_an_id_that_exists_is_refused_naming_the_device_file_and_nothing_is_written(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = add_refused(capsys, fleet, admin, "amr-002")
    assert code == 1
    assert "devices/amr-002.yaml: id: robot 'amr-002' already exists" in err


def test_an_id_gitolite_already_knows_is_refused_naming_its_key_file(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = add_refused(capsys, fleet, admin, "fleetcd-controller")
    assert code == 1
    assert "keydir/fleetcd-controller.pub: gitolite already has a key for 'fleetcd-controller'" in err


def test_an_unknown_cohort_is_refused_naming_the_cohort_file_and_nothing_is_written(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = add_refused(capsys, fleet, admin, "amr-010", "--cohort", "canary")
    assert code == 1
    assert "cohorts/canary.yaml: no cohort 'canary' (cohorts: production, staging)" in err


def test_a_selector_cohort_that_does_not_match_the_robot_is_refused(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    heads = _heads(fleet, admin)
    args = ["robot", "add", "amr-011", "--repo", str(fleet.root), *AUTHOR, "--gitolite-admin", str(admin)]
    args += [
        "--site",
        "tokyo",
        "--family",
        "amr",
        "--model",
        "mk2",
        "--revision",
        "3",
        "--cohort",
        "production",
    ]
    args += ["--url", "ssh://git@h/fleet", "--out", str(fleet.root.parent / "robots")]
    code, _, err = fleetcd(capsys, *args)
    assert code == 1 and "cohorts/production.yaml: selector: " in err and "site tokyo" in err
    _unchanged(fleet, admin, heads)


@pytest.mark.parametrize(
    "robot",
    ["../amr", "amr 1", "amr-", "amr--1", "a" * 65, "amr/1"],
    ids=["traversal", "space", "trailing-dash", "double-dash", "too-long", "slash"],
)
def test_a_bad_robot_id_is_a_usage_error_before_anything_is_read(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str], robot: str
) -> None:
    code, err = add_refused(capsys, fleet, admin, robot)
    assert code == 2 and "is not a safe name" in err


def test_a_bad_device_field_is_refused_with_file_line_and_field(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = add_refused(capsys, fleet, admin, "amr-012", "--timezone", "Mars/Olympus")
    assert code == 1 and "devices/amr-012.yaml:" in err and "timezone: unknown IANA time zone" in err


def test_a_key_another_robot_already_logs_in_with_is_refused(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = add_refused(
        capsys, fleet, admin, "amr-013", "--ssh-public-key", str(admin / "keydir" / "amr-001.pub")
    )
    assert code == 1 and "keydir/amr-001.pub: key SHA256:" in err and "already belongs to 'amr-001'" in err


def test_a_robot_folder_inside_the_fleet_repository_is_refused_so_its_key_is_never_committed(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = add_refused(capsys, fleet, admin, "amr-016", "--out", str(fleet.root / "robots"))
    assert code == 4 and "inside the repository" in err and "private key would be committed" in err
    assert not (fleet.root / "robots").exists()
    args = [
        "robot",
        "rotate-key",
        "amr-001",
        "--repo",
        str(fleet.root),
        *AUTHOR,
        "--gitolite-admin",
        str(admin),
    ]
    code, _, err = fleetcd(capsys, *args, "--out", str(admin / "new"))
    assert code == 4 and "inside the repository" in err and not (admin / "new").exists()


def test_a_file_that_is_no_public_key_is_refused_naming_it(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    private = tmp_path / "oops"
    _keygen(private)
    code, _, err = add(capsys, fleet, admin, "amr-014", "--ssh-public-key", str(private))
    assert code == 1 and f"{private}: is not one OpenSSH public key line" in err


def test_a_write_that_fails_midway_puts_back_what_was_written(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    heads = _heads(fleet, admin)

    def disk_full(self: WorkTree, changes: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(WorkTree, "write", disk_full)  # after the robot folder and gitolite are written
    code, _, err = add(capsys, fleet, admin, "amr-015")
    assert code != 0 and "No space left on device" in err  # the CLI's handler reports it, never a success
    _unchanged(fleet, admin, heads)


def test_a_gitolite_conf_without_a_robots_group_is_refused_naming_it(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (admin / "conf" / "gitolite.conf").write_text("repo gitolite-admin\n    RW+ = admin\n")
    _git(admin, "commit", "-qam", "no fleet block yet")
    code, err = add_refused(capsys, fleet, admin, "amr-017")
    assert code == 1 and "conf/gitolite.conf: has no '@robots = ...' line to enrol 'amr-017' in" in err


def test_no_commit_leaves_both_edits_for_a_pull_request(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    heads = _heads(fleet, admin)
    code, out, err = add(capsys, fleet, admin, "amr-018", "--no-commit")
    assert code == 0, err
    assert _heads(fleet, admin) == heads
    assert sorted(fleet.git("status", "--porcelain").split()) == [
        "??",
        "M",
        "cohorts/staging.yaml",
        "devices/amr-018.yaml",
    ]
    assert "keydir/amr-018.pub" in _git(admin, "status", "--porcelain")
    assert "fleet repository: edited (not committed)" in out


def test_a_push_that_fails_is_a_transport_error_and_the_commits_stand(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = add(capsys, fleet, admin, "amr-019", "--push")  # the checkout has no remote
    assert code == 5 and "git push failed" in err
    assert _git(admin, "log", "-1", "--format=%s").strip() == "Enrol robot amr-019 in cohort staging"
    assert fleet.git("log", "-1", "--format=%s") == "Enrol robot amr-019 in cohort staging"


# --- robot retire ------------------------------------------------------------------------------------


def test_retire_marks_the_robot_decommissioned_keeps_its_file_and_revokes_every_key_it_has(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (admin / "keydir" / "site-b").mkdir()
    _keygen(tmp_path / "second").replace(
        admin / "keydir" / "site-b" / "amr-001.pub"
    )  # gitolite: also amr-001
    _keygen(tmp_path / "laptop").replace(admin / "keydir" / "amr-001@laptop.pub")  # also amr-001
    _keygen(tmp_path / "mail").replace(admin / "keydir" / "amr-001@example.com.pub")  # another user
    _git(admin, "add", "-A")
    _git(admin, "commit", "-qm", "more keys")
    before = fleet.read("devices/amr-001.yaml").decode()
    code, _, err = fleetcd(
        capsys,
        "robot",
        "retire",
        "amr-001",
        "--repo",
        str(fleet.root),
        *AUTHOR,
        "--gitolite-admin",
        str(admin),
    )
    assert code == 0, err
    after = fleet.read("devices/amr-001.yaml").decode()
    assert after.startswith(before) and after.endswith("decommissioned: true\n")
    assert load_document("devices/amr-001.yaml", after.encode(), Device).model.decommissioned
    assert "amr-001" in fleet.read("cohorts/staging.yaml").decode(), "its cohort entry is history too"
    checkout = AdminCheckout.open(admin)
    assert checkout.key_files_of("amr-001") == []
    assert "keydir/amr-001@example.com.pub" in checkout.keys
    assert "@robots = amr-002        # generated" in checkout.conf
    assert fleet.git("log", "-1", "--format=%s") == "Retire robot amr-001"

    code, out, _ = fleetcd(
        capsys,
        "robot",
        "retire",
        "amr-001",
        "--repo",
        str(fleet.root),
        *AUTHOR,
        "--gitolite-admin",
        str(admin),
    )
    assert code == 0 and out.startswith("nothing to do: amr-001 is already retired")


def test_retiring_a_robot_that_does_not_exist_names_the_missing_file(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = fleetcd(capsys, "robot", "retire", "amr-404", "--repo", str(fleet.root), *AUTHOR)
    assert code == 1 and "devices/amr-404.yaml: no robot 'amr-404'" in err


# --- robot rotate-key --------------------------------------------------------------------------------


def test_rotate_key_replaces_the_robots_key_and_refuses_the_same_key_again(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old = (admin / "keydir" / "amr-001.pub").read_text()
    args = [
        "robot",
        "rotate-key",
        "amr-001",
        "--repo",
        str(fleet.root),
        *AUTHOR,
        "--gitolite-admin",
        str(admin),
    ]
    code, _, err = fleetcd(capsys, *args, "--out", str(tmp_path / "new"))
    assert code == 0, err
    new = (tmp_path / "new" / "id_ed25519.pub").read_text()
    assert (admin / "keydir" / "amr-001.pub").read_text().split()[:2] == new.split()[:2] != old.split()[:2]
    assert _git(admin, "log", "-1", "--format=%s").strip() == "Rotate robot amr-001's SSH key"

    code, _, err = fleetcd(capsys, *args, "--ssh-public-key", str(tmp_path / "new" / "id_ed25519.pub"))
    assert code == 1 and "is the key 'amr-001' already has" in err
    code, _, err = fleetcd(capsys, *args, "--out", str(tmp_path / "new"))
    assert code == 4 and "a key is already there; it is never overwritten" in err


def test_a_retired_robots_key_is_not_rotated(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert fleetcd(capsys, "robot", "retire", "amr-002", "--repo", str(fleet.root), *AUTHOR)[0] == 0
    args = [
        "robot",
        "rotate-key",
        "amr-002",
        "--repo",
        str(fleet.root),
        *AUTHOR,
        "--gitolite-admin",
        str(admin),
    ]
    code, _, err = fleetcd(capsys, *args, "--out", str(tmp_path / "new"))
    assert code == 1 and "devices/amr-002.yaml: decommissioned: amr-002 is retired" in err
    assert not (tmp_path / "new").exists()


# --- the text edits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("devices: [a, b]  # keep\nstage: x\n", "devices: [a, b, new]  # keep\nstage: x\n"),
        ("devices:\n- a\n# note\nstage: x\n", "devices:\n- a\n- new\n# note\nstage: x\n"),
        ("devices:\n    - a\n    - b\n\nstage: x\n", "devices:\n    - a\n    - b\n    - new\n\nstage: x\n"),
        ("devices:\n  - a", "devices:\n  - a\n  - new\n"),
    ],
    ids=["flow", "column-0", "indented", "no-final-newline"],
)
def test_an_entry_is_appended_to_a_list_keeping_layout_and_comments(before: str, after: str) -> None:
    assert append_list_item(before, "devices", "new") == after


@pytest.mark.parametrize(
    "text", ["devices: a\n", "devices:\n  x: 1\n", "stage: x\n"], ids=["scalar", "map", "missing"]
)
def test_what_is_not_a_list_is_refused_not_guessed(text: str) -> None:
    with pytest.raises(UneditableYaml):
        append_list_item(text, "devices", "new")


def test_the_cohort_edit_loads_back_as_the_cohort_plus_the_robot(fleet: FleetRepoBuilder) -> None:
    edited = append_list_item(STAGING_COHORT, "devices", "amr-003")
    assert load_document("c.yaml", edited.encode(), Cohort).model.devices == ["amr-001", "amr-003"]


def test_gitolite_group_edits_keep_comments_and_other_lines() -> None:
    added = conf_with_robot(CONF, "amr-003")
    assert added == CONF.replace("amr-002        #", "amr-002 amr-003        #")
    assert conf_with_robot(added, "amr-003") == added
    assert conf_without_robot(added, "amr-003") == CONF
    emptied = conf_without_robot(conf_without_robot(CONF, "amr-001"), "amr-002")
    assert "\n#@robots =        # generated from devices/*.yaml\n" in emptied and "repo fleet" in emptied
    assert conf_with_robot(emptied, "amr-009") == CONF.replace("amr-001 amr-002", "amr-009")
    assert (
        conf_with_robot("# @robots = old ones\n@robots = a\n", "b") == "# @robots = old ones\n@robots = a b\n"
    )
    assert robots_in("#@robots = x\n@robots = a\n") == {"a"}, "a commented-out line grants nothing"
    assert conf_without_robot(CONF, "amr-00") == CONF, "a prefix of an id is another robot"


@pytest.mark.parametrize(
    ("path", "owner"),
    [
        ("keydir/amr-1.pub", "amr-1"),
        ("keydir/site/amr-1.pub", "amr-1"),
        ("keydir/amr-1@laptop.pub", "amr-1"),
        ("keydir/amr-1@example.com.pub", "amr-1@example.com"),
        ("conf/amr-1.pub", None),
        ("keydir/amr-1.pem", None),
    ],
)
def test_a_key_files_owner_is_read_as_gitolite_reads_it(path: str, owner: str | None) -> None:
    assert key_owner(path) == owner


# --- more edges ------------------------------------------------------------------------------------


@pytest.mark.parametrize("robot", ["yes", "null", "1e3", "0x1F"], ids=str)
def test_an_id_yaml_would_read_as_another_type_is_quoted_in_the_cohort(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str], robot: str
) -> None:
    code, _, err = add(capsys, fleet, admin, robot)
    assert code == 0, err
    text = fleet.read("cohorts/staging.yaml").decode()
    assert f'  - "{robot}"\n' in text
    assert load_document("c.yaml", text.encode(), Cohort).model.devices == ["amr-001", robot]
    assert load_document("d.yaml", fleet.read(f"devices/{robot}.yaml"), Device).model.id == robot
    assert load_config(fleet.root.parent / "robots" / robot / "agent.yaml").device == robot


def test_robot_settings_reach_its_agent_yaml(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--executor", "docker", "--state-dir", "/data/fleetcd", "--config-dir", "/opt/robot/"]
    code, _, err = add(capsys, fleet, admin, "amr-020", *extra, "--ssh-user", "git")
    assert code == 0, err
    config = load_config(fleet.root.parent / "robots" / "amr-020" / "agent.yaml")
    assert (config.executor, config.state_dir, config.remote.ssh_user) == ("docker", "/data/fleetcd", "git")
    assert (config.remote.ssh_key, config.trust.keys_dir) == ("/opt/robot/id_ed25519", "/opt/robot/keys")


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("--url", "", "remote.url"),
        ("--host-key-sha256", "A" * 200, "remote.host_key_sha256"),
        ("--host-key-sha256", "SHA256:abc", "remote.host_key_sha256"),
        ("--ssh-user", "u" * 65, "remote.ssh_user"),
    ],
    ids=["empty-url", "huge-host-key", "malformed-host-key", "long-user"],
)
def test_an_agent_setting_out_of_bounds_is_refused_naming_agent_yaml_and_the_field(
    fleet: FleetRepoBuilder,
    admin: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    field: str,
) -> None:
    code, err = add_refused(capsys, fleet, admin, "amr-023", option, value)
    assert code == 1 and f"amr-023/agent.yaml: {field}: " in err


@pytest.mark.parametrize("option", ["--config-dir", "--state-dir"])
def test_a_relative_path_on_the_robot_is_a_usage_error(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    code, _, err = add(capsys, fleet, admin, "amr-024", option, "etc/fleetcd")
    assert code == 2 and "a path on the robot must be absolute" in err


def test_a_fleet_tree_with_other_edits_is_refused_before_anything_is_written(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (fleet.root / "devices" / "amr-002.yaml").write_text(
        fleet.read("devices/amr-002.yaml").decode() + "# wip\n"
    )
    heads = _heads(fleet, admin)
    code, _, err = add(capsys, fleet, admin, "amr-021")
    assert code == 4 and "uncommitted changes (devices/amr-002.yaml)" in err
    assert _heads(fleet, admin) == heads and _git(admin, "status", "--porcelain") == ""
    assert not (fleet.root / "devices" / "amr-021.yaml").exists()
    assert not any((fleet.root.parent / "robots").glob("*"))


def test_a_folder_that_is_no_gitolite_admin_checkout_is_refused(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "elsewhere").mkdir()
    code, _, err = add(capsys, fleet, tmp_path / "elsewhere", "amr-022")
    assert code == 4 and "not a gitolite-admin checkout" in err
    assert not (fleet.root / "devices" / "amr-022.yaml").exists()


def test_without_gitolite_retire_still_retires_and_says_the_key_is_the_operators_to_revoke(
    fleet: FleetRepoBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = fleetcd(capsys, "robot", "retire", "amr-002", "--repo", str(fleet.root), *AUTHOR)
    assert code == 0
    assert "revoke its key on the git server yourself" in err
    assert load_document("d.yaml", fleet.read("devices/amr-002.yaml"), Device).model.decommissioned


def test_rotating_to_another_robots_key_is_refused(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "robot",
        "rotate-key",
        "amr-001",
        "--repo",
        str(fleet.root),
        *AUTHOR,
        "--gitolite-admin",
        str(admin),
    ]
    code, _, err = fleetcd(capsys, *args, "--ssh-public-key", str(admin / "keydir" / "amr-002.pub"))
    assert code == 1 and "already belongs to 'amr-002'" in err
    assert _git(admin, "status", "--porcelain") == ""


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"ssh-ed25519 AAAA\nssh-ed25519 BBBB\n", "is not one OpenSSH public key line"),
        (b"ssh-ed25519 not-base64 me\n", "ssh-keygen does not read it"),
        (b"x" * (17 * 1024), "an SSH public key is one short line"),
        (b"", "is not one OpenSSH public key line"),
    ],
    ids=["two-keys", "garbage", "huge", "empty"],
)
def test_what_is_not_a_public_key_is_refused_before_gitolite_sees_it(
    content: bytes, why: str, tmp_path: Path
) -> None:
    from controller.ops.sshkeys import read_public_key
    from fleetcd.errors import InvalidContent

    path = tmp_path / "robot.pub"
    path.write_bytes(content)
    with pytest.raises(InvalidContent, match=why):
        read_public_key(path)


def test_an_enrolled_robot_polls_the_replicas_given_and_pushes_status_to_its_own_shard(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fleetcd.shards import shard_of

    shards = {"eu-1": "ssh://git@eu-1.example.com/fleet", "eu-2": "ssh://git@eu-2.example.com/fleet"}
    extra = [
        "--replica",
        "git://mirror-1.example.com/fleet",
        "--replica",
        "ssh://git@mirror-2.example.com/fleet",
    ]
    for name, url in shards.items():
        extra += ["--status-shard", f"{name}={url}"]
    code, _, err = add(capsys, fleet, admin, "amr-008", *extra)
    assert code == 0, err
    config = load_config(fleet.root.parent / "robots" / "amr-008" / "agent.yaml")
    assert [r.url for r in config.remote.replicas] == [
        "git://mirror-1.example.com/fleet",
        "ssh://git@mirror-2.example.com/fleet",
    ]
    own = shard_of("amr-008", shards)
    assert config.remote.status is not None and config.remote.status.url == shards[own]
    assert f"status shard {own}" in err  # the operator is told which server needs the robot's key


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        (["--status-shard", "eu-1"], "expected NAME=URL"),
        (["--status-shard", "a=/x", "--status-shard", "a=/y"], "given twice"),
        (["--replica", "ssh://git@git.example.com/fleet"], "repeats remote.url"),
    ],
    ids=["no-url", "twice", "replica-is-primary"],
)
def test_a_bad_replica_or_status_shard_is_refused_and_nothing_is_written(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str], extra: list[str], why: str
) -> None:
    heads = _heads(fleet, admin)
    code, out, err = add(capsys, fleet, admin, "amr-009", *extra)
    assert code != 0 and why in out + err
    _unchanged(fleet, admin, heads)


PIN_PRIMARY = "SHA256:" + "P" * 43
PIN_MIRROR = "SHA256:" + "m" * 43
PIN_SHARD = "SHA256:" + "s" * 43


def test_every_server_of_an_enrolled_robot_gets_its_own_host_key_pin(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A replica and a status shard each live on a server with its own host key: without a pin the
    robot would trust whatever key its known_hosts holds for them (or none). A server on the
    primary's host (a second repository there) takes the primary's pin."""
    from fleetcd.shards import shard_of

    shards = {"eu-1": "ssh://git@Shard.example.com:2222/status", "eu-2": "git@shard.example.com:status-2"}
    extra = ["--host-key-sha256", PIN_PRIMARY, "--server-host-key", f"mirror.example.com={PIN_MIRROR}"]
    extra += ["--server-host-key", f"SHARD.example.com={PIN_SHARD}"]
    extra += [
        "--replica",
        "ssh://git@mirror.example.com/fleet",
        "--replica",
        "ssh://git@git.example.com/mirror",
    ]
    extra += ["--replica", "https://cdn.example.com/fleet.git"]
    for name, url in shards.items():
        extra += ["--status-shard", f"{name}={url}"]
    code, _, err = add(capsys, fleet, admin, "amr-010", *extra)
    assert code == 0, err
    config = load_config(fleet.root.parent / "robots" / "amr-010" / "agent.yaml")
    assert config.remote.host_key_sha256 == PIN_PRIMARY
    assert [r.host_key_sha256 for r in config.remote.replicas] == [PIN_MIRROR, PIN_PRIMARY, None]
    assert shard_of("amr-010", shards) in shards
    assert config.remote.status is not None and config.remote.status.host_key_sha256 == PIN_SHARD


def test_the_primary_can_be_pinned_by_its_host_name_too(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = add(capsys, fleet, admin, "amr-011", "--server-host-key", f"git.example.com={PIN_PRIMARY}")
    assert code == 0, err
    config = load_config(fleet.root.parent / "robots" / "amr-011" / "agent.yaml")
    assert config.remote.host_key_sha256 == PIN_PRIMARY


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        (["--server-host-key", "mirror.example.com"], "expected HOST=SHA256"),
        (["--server-host-key", "mirror.example.com=SHA256:short"], "expected HOST=SHA256"),
        (
            ["--server-host-key", f"typo.example.com={PIN_MIRROR}"],
            "no server of amr-012 is on typo.example.com",
        ),
        (
            [
                "--server-host-key",
                f"m.example.com={PIN_MIRROR}",
                "--server-host-key",
                f"M.example.com={PIN_SHARD}",
            ],
            "two different host keys",
        ),
        (
            ["--host-key-sha256", PIN_PRIMARY, "--server-host-key", f"git.example.com={PIN_MIRROR}"],
            "--host-key-sha256 says",
        ),
    ],
    ids=["no-pin", "bad-pin", "unknown-host", "two-pins", "primary-twice"],
)
def test_a_host_key_pin_that_pins_nothing_or_two_things_is_refused_and_nothing_is_written(
    fleet: FleetRepoBuilder, admin: Path, capsys: pytest.CaptureFixture[str], extra: list[str], why: str
) -> None:
    heads = _heads(fleet, admin)
    code, out, err = add(capsys, fleet, admin, "amr-012", *extra)
    assert code != 0 and why in out + err
    _unchanged(fleet, admin, heads)
