"""HTTP health probes: the only health module using ``requests``.

One GET, one status code. The probe talks to the robot's own app, so:

* proxies from the environment are ignored (``HTTP_PROXY`` must not route ``localhost`` elsewhere);
* redirects are not followed: the status the app answers is the one compared with ``expect_status``;
* the body is never read (``stream=True``), so a huge or endless body costs nothing;
* ``timeout_seconds`` bounds the connect and each read; a server that accepts and never answers
  fails at it.
"""

from __future__ import annotations

from fleetcd.errors import TransportError


def get_status(url: str, *, timeout_seconds: float) -> int:
    """The HTTP status ``url`` answers with; :class:`TransportError` naming the URL when none came."""
    import requests  # here: a robot whose releases probe nothing over HTTP never pays for it

    with requests.Session() as session:
        session.trust_env = False
        try:
            response = session.get(
                url,
                timeout=(timeout_seconds, timeout_seconds),
                allow_redirects=False,
                stream=True,
                headers={"User-Agent": "fleetcd-agent health probe", "Accept-Encoding": "identity"},
            )
        except requests.Timeout as exc:
            raise TransportError(f"GET {url}: no answer within {timeout_seconds:g} s") from exc
        except requests.RequestException as exc:
            raise TransportError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        with response:
            return response.status_code
