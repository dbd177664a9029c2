"""Click options shared by several ``fleetcd`` commands, so their wording and defaults never drift apart.

Also :func:`remote_source`, which turns the remote options (and the SSH environment) into the
:class:`~controller.reconcile.source.Source` every command reading or writing a remote uses, and
:func:`controller_settings`, which gathers the controller's options into one
:class:`~controller.reconcile.settings.ControllerSettings`.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from controller.notify.forge import TOKEN_ENV, Forge, ForgeError, ForgeKind, load_token
from controller.notify.signing import SECRET_ENV, SecretError, WebhookSecret, load_secret
from controller.ops.output import FORMATS
from controller.reconcile.settings import ControllerSettings
from controller.reconcile.shards import StatusShard
from controller.reconcile.source import Source
from fleetcd.git.hostkeys import HostKeyPolicy
from fleetcd.git.remote import SshKey
from fleetcd.shards import ShardSpec, check_shards, parse_shard

F = TypeVar("F", bound=Callable[..., Any])

SSH_KEY_ENV = "FLEETCD_SSH_KEY"
SSH_USER_ENV = "FLEETCD_SSH_USER"
HOST_KEY_ENV = "FLEETCD_SSH_HOST_KEY"
DEFAULT_SSH_USER = "git"  # gitolite's and most forges' SSH user; the URL's user wins

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fleetcd"


class FiniteRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf``: click's range lets ``nan`` through
    (every comparison with it is false), and a NaN interval or timing reaches ``Event.wait``."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def stacked(*options: Callable[[F], F]) -> Callable[[F], F]:
    """One decorator applying ``options`` as if written top to bottom (the order ``--help`` lists)."""

    def apply(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


# --- the fleet repository as a remote (controller, audit, get, history, receipt, sim) -----------------
repo_option = click.option(
    "--repo", "url", required=True, help="Fleet repository: a path, file://, or ssh:// URL."
)
cache_option = click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_CACHE,
    show_default=True,
    help="Where the local mirror lives (a cache; safe to delete).",
)
# Not the controller's mirror: a fetch here force-updates the state branch in the mirror, which would
# race a controller on the same machine between its state commit and its push.
operator_cache_option = click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_CACHE / "operator",
    show_default=True,
    help="Where the local mirror for reading lives (a cache; safe to delete).",
)
ssh_key_option = click.option(
    "--ssh-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar=SSH_KEY_ENV,
    default=None,
    help=f"Private SSH key for ssh:// remotes; the public key is KEY.pub [env: {SSH_KEY_ENV}].",
)
host_key_option = click.option(
    "--host-key-sha256",
    "host_key",
    envvar=HOST_KEY_ENV,
    default=None,
    help="Pin the server's SSH host key, 'SHA256:...' (else known_hosts); several servers (status "
    f"shards): their pins joined by commas [env: {HOST_KEY_ENV}].",
)
controller_gnupghome_option = click.option(
    "--gnupghome",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="GNUPGHOME",
    required=True,
    help="Keyring holding the controller's secret key [env: GNUPGHOME].",
)
flat_refs_option = click.option(
    "--flat-refs",
    is_flag=True,
    help="Write refs/fleetcd/desired/<robot> instead of per-robot namespaces (no server setup needed).",
)
webhook_secret_file_option = click.option(
    "--webhook-secret-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help=f"File holding the secret that signs webhooks (HMAC-SHA256) [or the secret in env {SECRET_ENV}].",
)


def _status_shards(
    _ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
) -> tuple[ShardSpec, ...]:
    try:
        return check_shards(parse_shard(item) for item in value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


status_shard_option = click.option(
    "--status-shard",
    "status_shards",
    multiple=True,
    metavar="NAME=URL",
    callback=_status_shards,
    help="A repository robots push status to; repeatable. Each robot uses one, by a hash of its id "
    "(the same list for the controller and `robot add`; docs/git-server.md, 'Status shards').",
)
# `controller reconcile` and `controller run`: --repo, --cache, --gnupghome, --flat-refs, SSH, webhooks.
controller_options = stacked(
    repo_option,
    cache_option,
    controller_gnupghome_option,
    flat_refs_option,
    status_shard_option,
    ssh_key_option,
    host_key_option,
    webhook_secret_file_option,
    click.option(
        "--commit-status-forge",
        type=click.Choice([k.value for k in ForgeKind]),
        envvar="FLEETCD_COMMIT_STATUS_FORGE",
        default=None,
        help="Post main's commit status to this git host's API [env: FLEETCD_COMMIT_STATUS_FORGE].",
    ),
    click.option(
        "--commit-status-api",
        metavar="URL",
        envvar="FLEETCD_COMMIT_STATUS_API",
        default=None,
        help="Its API base, e.g. https://api.github.com, https://HOST/api/v4 (GitLab), https://HOST/api/v1"
        " (Gitea) [env: FLEETCD_COMMIT_STATUS_API].",
    ),
    click.option(
        "--commit-status-repo",
        metavar="OWNER/REPO",
        envvar="FLEETCD_COMMIT_STATUS_REPO",
        default=None,
        help="The fleet repository there (GitLab: project id or path) [env: FLEETCD_COMMIT_STATUS_REPO].",
    ),
    click.option(
        "--commit-status-token-file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help=f"File holding the API token [or the token in env {TOKEN_ENV}].",
    ),
)
# `get`, `history`, `receipt`: read the remote through the operator's own mirror.
operator_remote_options = stacked(repo_option, operator_cache_option)
output_option = click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format.",
)


def remote_source(url: str, cache: Path, ssh_key: Path | None = None, host_key: str | None = None) -> Source:
    """The fleet repository at ``url`` with this process's SSH identity (options, else environment).

    Every command that talks to a remote goes through here, so ``FLEETCD_SSH_KEY`` and
    ``FLEETCD_SSH_HOST_KEY`` work for ``get``/``history``/``receipt`` as for the controller.
    """
    key = ssh_key or (Path(os.environ[SSH_KEY_ENV]) if os.environ.get(SSH_KEY_ENV) else None)
    pin = host_key or os.environ.get(HOST_KEY_ENV) or None
    user = os.environ.get(SSH_USER_ENV) or DEFAULT_SSH_USER
    credentials = SshKey(user, key) if key is not None else None
    try:
        pins = tuple(p.strip() for p in pin.split(",") if p.strip()) if pin else ()
        host_keys = HostKeyPolicy(pinned_sha256=pins) if pins else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--host-key-sha256") from exc
    return Source.for_url(url, cache, credentials, host_keys)


def status_shards_of(specs: tuple[ShardSpec, ...], source: Source) -> tuple[StatusShard, ...]:
    """``--status-shard`` as the controller reaches each shard: with ``source``'s SSH identity."""
    return tuple(StatusShard(s.name, s.url, source.credentials, source.host_keys) for s in specs)


def webhook_secret(file: Path | None) -> WebhookSecret | None:
    """The webhook secret from ``--webhook-secret-file`` or the environment; a bad one is refused."""
    try:
        return load_secret(file, os.environ.get(SECRET_ENV))
    except SecretError as exc:
        raise click.BadParameter(str(exc), param_hint="--webhook-secret-file") from exc


def commit_status_of(
    kind: str | None, api: str | None, repo: str | None, token_file: Path | None
) -> Forge | None:
    """Where main's commit status goes: all of forge, API and repository with a token, or none."""
    try:
        token = load_token(token_file, os.environ.get(TOKEN_ENV))
    except ForgeError as exc:
        raise click.UsageError(str(exc)) from exc
    given = {"--commit-status-forge": kind, "--commit-status-api": api, "--commit-status-repo": repo}
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    if token is None:
        missing.append(f"--commit-status-token-file or {TOKEN_ENV}")
    if missing:
        raise click.UsageError(f"commit statuses also need {', '.join(missing)}")
    try:
        return Forge(ForgeKind(kind), str(api), str(repo), str(token))
    except ForgeError as exc:
        raise click.UsageError(str(exc)) from exc


def controller_settings(command: F) -> F:
    """:data:`controller_options` handed to ``command`` as one ``settings`` argument.

    ``controller reconcile`` and ``controller run`` take the same options into the same
    :class:`ControllerSettings`; their own options reach ``command`` by name as usual.
    """

    @controller_options
    @functools.wraps(command)
    def with_settings(
        *,
        url: str,
        cache: Path,
        gnupghome: Path,
        flat_refs: bool,
        status_shards: tuple[ShardSpec, ...],
        ssh_key: Path | None,
        host_key: str | None,
        webhook_secret_file: Path | None,
        commit_status_forge: str | None,
        commit_status_api: str | None,
        commit_status_repo: str | None,
        commit_status_token_file: Path | None,
        **own: Any,
    ) -> Any:
        source = remote_source(url, cache, ssh_key, host_key)
        settings = ControllerSettings(
            source=source,
            status_shards=status_shards_of(status_shards, source),
            gnupghome=gnupghome,
            namespaces=not flat_refs,
            webhook_secret=webhook_secret(webhook_secret_file),
            commit_status=commit_status_of(
                commit_status_forge, commit_status_api, commit_status_repo, commit_status_token_file
            ),
        )
        return command(settings=settings, **own)

    return cast(F, with_settings)


# --- a local fleet repository work tree (sign, approve, pause, resume, rollback, deploy) ------------
signer_gnupghome_option = click.option(
    "--gnupghome",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Keyring with your secret key [default: <repo>/.fleetcd/gnupg, else $GNUPGHOME or ~/.gnupg].",
)


def repo_found_from(argument: str) -> Callable[[F], F]:
    """``--repo``: for commands that take a file inside the fleet repository."""
    return click.option(
        "--repo",
        type=click.Path(file_okay=False, exists=True, path_type=Path),
        help=f"Fleet repository [default: found from {argument}].",
    )


local_repo_option = click.option(
    "--repo",
    "repo",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path(),
    show_default=True,
    help="Local fleet repository work tree (its root, or any folder inside it).",
)
# Commands that commit an edit: --repo, --no-commit, --author.
write_options = stacked(
    local_repo_option,
    click.option("--no-commit", is_flag=True, help="Leave the edit uncommitted (for a pull request)."),
    click.option("--author", metavar="'NAME <EMAIL>'", help="Commit author [default: git config]."),
)
# Commands whose edit voids approvals: --approve, --gnupghome.
approve_options = stacked(
    click.option("--approve", is_flag=True, help="Also approve with every approver key in the keyring."),
    click.option(
        "--gnupghome",
        type=click.Path(file_okay=False, exists=True, path_type=Path),
        help="Keyring with approver keys for --approve [default: <repo>/.fleetcd/gnupg, else $GNUPGHOME].",
    ),
)
