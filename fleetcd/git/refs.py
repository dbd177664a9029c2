"""Names of the refs fleetcd reads and writes: the one place the ref layout is spelled out (pure).

The controller commits records and audit to :data:`STATE_BRANCH`, one small commit per robot to
:func:`desired_ref`, and each robot pushes its report to :func:`status_ref`. Status refs sit one
level below the device id (``refs/fleetcd/status/<id>/report``) so a git server can grant a robot
exactly its own subtree (gitolite: ``RW refs/fleetcd/status/USER/ = @robots`` — the trailing slash
keeps ``dev-1`` from writing ``dev-10``'s refs).

For serving each robot only its own view (:envvar:`GIT_NAMESPACE`, see DESIGN §4 and
``bench/git_poll_bytes.py``) the same ref names live under :func:`namespace_prefix`, so the agent asks
for the same ref whichever layout the server uses. A server that applies no namespace shows a robot's
ref under both of its names at once when both layouts are present (:func:`desired_names`); which one
the robot follows is decided in :mod:`agent.sync.layout` (docs/git-server.md).
"""

from __future__ import annotations

from fleetcd.models.base import is_safe_name

MAIN_BRANCH = "refs/heads/main"
STATE_BRANCH = "refs/heads/fleetcd/state"
DESIRED_PREFIX = "refs/fleetcd/desired/"
STATUS_PREFIX = "refs/fleetcd/status/"
STATUS_LEAF = "report"
NAMESPACES_PREFIX = "refs/namespaces/"


def _checked(device: str) -> str:
    if not is_safe_name(device):
        raise ValueError(
            f"device id {device!r} cannot name a git ref (letters and digits joined by single "
            "'.', '_' or '-', at most 64 characters)"
        )
    return device


def desired_ref(device: str) -> str:
    """``refs/fleetcd/desired/<device>``: the controller's commit for one robot."""
    return f"{DESIRED_PREFIX}{_checked(device)}"


def status_ref(device: str) -> str:
    """``refs/fleetcd/status/<device>/report``: the robot's own report, writable only by it."""
    return f"{STATUS_PREFIX}{_checked(device)}/{STATUS_LEAF}"


def status_prefix(device: str) -> str:
    """``refs/fleetcd/status/<device>/``: the subtree an ACL grants to one robot."""
    return f"{STATUS_PREFIX}{_checked(device)}/"


def device_of_desired_ref(ref: str) -> str | None:
    """The device id a desired-state ref belongs to, or None for any other ref."""
    if not ref.startswith(DESIRED_PREFIX):
        return None
    device = ref.removeprefix(DESIRED_PREFIX)
    return device if is_safe_name(device) else None


def device_of_status_ref(ref: str) -> str | None:
    """The device id of a ``.../status/<id>/report`` ref, or None for any other ref."""
    if not ref.startswith(STATUS_PREFIX):
        return None
    device, sep, leaf = ref.removeprefix(STATUS_PREFIX).partition("/")
    if not sep or leaf != STATUS_LEAF or not is_safe_name(device):
        return None
    return device


def namespace_prefix(device: str) -> str:
    """``refs/namespaces/<device>/``: where refs live when served with ``GIT_NAMESPACE=<device>``."""
    return f"{NAMESPACES_PREFIX}{_checked(device)}/"


def namespaced(device: str, ref: str) -> str:
    """The physical name of ``ref`` inside ``device``'s namespace (what the robot sees as ``ref``)."""
    if not ref.startswith("refs/"):
        raise ValueError(f"{ref!r} is not a full ref name (refs/...)")
    return f"{namespace_prefix(device)}{ref}"


def physical_desired_ref(device: str) -> str:
    """``refs/namespaces/<device>/refs/fleetcd/desired/<device>``: the namespaced layout's ref as a
    server that applies no namespace shows it."""
    return namespaced(device, desired_ref(device))


def desired_names(device: str) -> tuple[str, str]:
    """Both names a robot's desired state can have on its server, in the order that breaks ties
    (agent.sync.layout): the namespaced layout's physical name, then ``refs/fleetcd/desired/<id>``
    (the flat layout, or the namespaced one seen through ``GIT_NAMESPACE=<id>``)."""
    return physical_desired_ref(device), desired_ref(device)


def desired_ref_device(ref: str) -> tuple[str, bool] | None:
    """(device, namespaced) of a well-formed desired-state ref of either layout, else None."""
    if ref.startswith(DESIRED_PREFIX):
        device = device_of_desired_ref(ref)
        return None if device is None else (device, False)
    device, sep, inner = ref.removeprefix(NAMESPACES_PREFIX).partition("/refs/")
    if not ref.startswith(NAMESPACES_PREFIX) or not sep or device_of_desired_ref("refs/" + inner) != device:
        return None
    return device, True
