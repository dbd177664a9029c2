"""``fleetcd robot add|retire|rotate-key``: enrol, retire and re-key a real robot.

Thin wrappers around :mod:`controller.ops.enrol` and :mod:`controller.ops.robots`; errors map to
exit codes centrally (:func:`fleetcd.cli.main.run`). docs/agent.md ("Provisioning a real robot")
walks through them.
"""

from __future__ import annotations

from pathlib import Path

import click

from controller.cli.options import status_shard_option, write_options
from controller.ops.enrol import DEFAULT_CONFIG_DIR
from controller.ops.gitolite import ShardAdmin
from controller.ops.robots import RobotChange
from fleetcd.git.gitcli import server_host
from fleetcd.models.agent import HOST_KEY_PIN
from fleetcd.shards import ShardSpec, check_shard_name

gitolite_option = click.option(
    "--gitolite-admin",
    "gitolite_admin",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A gitolite-admin checkout: the robot's key file and its @robots membership go there.",
)


def _shard_admins(
    _ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
) -> tuple[ShardAdmin, ...]:
    admins: list[ShardAdmin] = []
    for item in value:
        name, sep, path = item.partition("=")
        try:
            check_shard_name(name)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        if not sep or not path or not Path(path).is_dir():
            raise click.BadParameter(f"{item!r}: expected NAME=PATH of a gitolite-admin checkout")
        if name in {a.name for a in admins}:
            raise click.BadParameter(f"status shard {name!r} is given twice")
        admins.append(ShardAdmin(name, Path(path)))
    return tuple(admins)


shard_admin_option = click.option(
    "--shard-admin",
    "shard_admins",
    multiple=True,
    metavar="NAME=PATH",
    callback=_shard_admins,
    help="The gitolite-admin checkout of the server holding status shard NAME; repeatable "
    "(docs/git-server.md, 'Status shards').",
)
push_option = click.option(
    "--push", is_flag=True, help="Also `git push` the gitolite-admin checkout (the server applies it then)."
)


def _robot_id(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from controller.ops.robots import check_robot_id

    try:
        check_robot_id(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _absolute(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.startswith("/"):
        raise click.BadParameter(f"{value!r}: a path on the robot must be absolute")
    return value


def _labels(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for item in value:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE")
        labels[name] = text
    return labels


def _server_host_keys(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for item in value:
        host, sep, pin = item.partition("=")
        host = host.strip().lower()
        if not sep or not host or not HOST_KEY_PIN.fullmatch(pin):
            raise click.BadParameter(f"{item!r}: expected HOST=SHA256:<43 base64 characters>")
        if pins.get(host, pin) != pin:
            raise click.BadParameter(f"{host} is given two different host keys")
        pins[host] = pin
    return pins


def _report(change: RobotChange) -> None:
    if not change.changed:
        for note in change.notes:
            click.echo(f"nothing to do: {note}")
        return
    if change.folder is not None:
        click.echo(f"wrote {change.folder}/")
    if change.key is not None:
        click.echo(f"ssh key {change.key.fingerprint}")
    for label, paths, made in (
        ("fleet repository", change.fleet_paths, change.fleet_commit),
        ("gitolite-admin", change.admin_paths, change.admin_commit),
    ):
        if paths:
            state = f"committed {made}" if made else "edited (not committed)"
            click.echo(f"{label}: {state}: {', '.join(paths)}")
    for shard in change.shard_admins:
        state = f"committed {shard.commit}" if shard.commit else "edited (not committed)"
        click.echo(
            f"gitolite-admin of status shard {shard.shard} ({shard.root}): {state}: {', '.join(shard.paths)}"
        )
    committed = change.admin_commit is not None or any(s.commit for s in change.shard_admins)
    if committed and not change.pushed:
        click.echo("gitolite-admin: push it to apply (git push, or rerun with --push)")
    for note in change.notes:
        click.secho(f"note: {note}", fg="yellow", err=True)


@click.group("robot")
def robot_group() -> None:
    """Enrol, retire and re-key real robots (docs/agent.md)."""


@robot_group.command("add")
@click.argument("robot", metavar="ID", callback=_robot_id)
@click.option("--site", required=True, help="Site name (devices/ID.yaml `site`).")
@click.option("--cohort", required=True, help="Cohort to add it to (cohorts/COHORT.yaml).")
@click.option("--family", required=True, help="Robot family (`family`).")
@click.option("--model", required=True, help="Hardware model (`hardware.model`).")
@click.option("--revision", type=click.IntRange(0, 10_000), required=True, help="Hardware revision.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone of its windows.")
@click.option("--label", "labels", multiple=True, callback=_labels, metavar="NAME=VALUE", help="Repeatable.")
@click.option(
    "--url", required=True, help="The fleet repository as the robot reaches it (ssh://git@host/fleet)."
)
@click.option("--host-key-sha256", "host_key", help="Pin the git server's host key, 'SHA256:...'.")
@click.option("--ssh-user", help="SSH user [default: the URL's user].")
@click.option(
    "--replica",
    "replicas",
    multiple=True,
    metavar="URL",
    help="A read replica the robot polls before --url; repeatable, asked in order (remote.replicas).",
)
@status_shard_option
@click.option(
    "--server-host-key",
    "server_host_keys",
    multiple=True,
    metavar="HOST=SHA256:...",
    callback=_server_host_keys,
    help="Pin the host key of the fleet's server at HOST (a --replica's or a --status-shard's); "
    "repeatable. A server on --url's host takes --host-key-sha256.",
)
@click.option(
    "--config-dir",
    default=DEFAULT_CONFIG_DIR,
    callback=_absolute,
    show_default=True,
    help="Where the robot's folder is copied on the robot (paths in agent.yaml).",
)
@click.option(
    "--state-dir",
    callback=_absolute,
    help="The agent's state folder on the robot [default: /var/lib/fleetcd].",
)
@click.option("--executor", type=click.Choice(["tarball", "docker"]), default="tarball", show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Write the robot's folder to OUT/ID (agent.yaml, keys/, its SSH key); not in a repository.",
)
@click.option(
    "--ssh-public-key",
    "public_key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The robot's own public key (made on the robot) instead of a new key made here.",
)
@gitolite_option
@shard_admin_option
@push_option
@write_options
def add_command(
    robot: str,
    site: str,
    cohort: str,
    family: str,
    model: str,
    revision: int,
    timezone: str,
    labels: dict[str, str],
    url: str,
    host_key: str | None,
    ssh_user: str | None,
    replicas: tuple[str, ...],
    status_shards: tuple[ShardSpec, ...],
    server_host_keys: dict[str, str],
    config_dir: str | None,
    state_dir: str | None,
    executor: str,
    out: Path,
    public_key: Path | None,
    gitolite_admin: Path | None,
    shard_admins: tuple[ShardAdmin, ...],
    push: bool,
    repo: Path,
    no_commit: bool,
    author: str | None,
) -> None:
    """Enrol robot ID: device file, cohort, its agent.yaml and SSH key, gitolite access."""
    from controller.ops.enrol import RobotSide, RobotSpec, add_robot

    unknown = sorted({a.name for a in shard_admins} - {s.name for s in status_shards})
    if unknown:
        raise click.BadParameter(
            f"no --status-shard is named {', '.join(unknown)}", param_hint="--shard-admin"
        )
    spec = RobotSpec(robot, site, cohort, family, model, revision, timezone, labels)
    side = RobotSide(
        url=url,
        config_dir=(config_dir or DEFAULT_CONFIG_DIR).rstrip("/") or "/",
        host_key_sha256=host_key,
        ssh_user=ssh_user,
        state_dir=state_dir,
        executor="docker" if executor == "docker" else "tarball",
        replicas=replicas,
        status_shards=status_shards,
        server_host_keys=server_host_keys,
    )
    primary = server_host(url)
    if host_key and primary in server_host_keys and server_host_keys[primary] != host_key:
        raise click.BadParameter(
            f"{primary} is pinned to {server_host_keys[primary]}, --host-key-sha256 says {host_key}",
            param_hint="--server-host-key",
        )
    stray = side.unpinned_hosts(robot)
    if stray:
        raise click.BadParameter(
            f"no server of {robot} is on {', '.join(stray)} (--url, a --replica or its --status-shard)",
            param_hint="--server-host-key",
        )
    change = add_robot(
        repo,
        spec,
        side,
        out=out,
        public_key=public_key,
        gitolite_admin=gitolite_admin,
        commit=not no_commit,
        author=author,
        push=push,
        shard_admins=shard_admins,
    )
    _report(change)


@robot_group.command("retire")
@click.argument("robot", metavar="ID", callback=_robot_id)
@gitolite_option
@shard_admin_option
@push_option
@write_options
def retire_command(
    robot: str,
    gitolite_admin: Path | None,
    shard_admins: tuple[ShardAdmin, ...],
    push: bool,
    repo: Path,
    no_commit: bool,
    author: str | None,
) -> None:
    """Retire robot ID: out of every rollout, keys revoked (every shard's too); its history is kept."""
    from controller.ops.robots import retire_robot

    _report(
        retire_robot(
            repo,
            robot,
            gitolite_admin=gitolite_admin,
            commit=not no_commit,
            author=author,
            push=push,
            shard_admins=shard_admins,
        )
    )


@robot_group.command("rotate-key")
@click.argument("robot", metavar="ID", callback=_robot_id)
@click.option(
    "--gitolite-admin",
    "gitolite_admin",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The gitolite-admin checkout holding the robot's key.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Make the new key here (OUT/id_ed25519 and .pub).",
)
@click.option(
    "--ssh-public-key",
    "public_key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The robot's new public key (made on the robot) instead of --out.",
)
@shard_admin_option
@push_option
@write_options
def rotate_key_command(
    robot: str,
    gitolite_admin: Path,
    out: Path | None,
    public_key: Path | None,
    shard_admins: tuple[ShardAdmin, ...],
    push: bool,
    repo: Path,
    no_commit: bool,
    author: str | None,
) -> None:
    """Give robot ID a new SSH key in gitolite; the old key is refused once pushed."""
    from controller.ops.robots import rotate_key

    if (out is None) == (public_key is None):
        raise click.UsageError("give exactly one of --out and --ssh-public-key")
    _report(
        rotate_key(
            repo,
            robot,
            gitolite_admin=gitolite_admin,
            out=out,
            public_key=public_key,
            commit=not no_commit,
            author=author,
            push=push,
            shard_admins=shard_admins,
        )
    )
