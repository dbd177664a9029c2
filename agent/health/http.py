"""HTTP health probes: one GET, one status code, through ``urllib3`` (the agent's only HTTP client).

``urllib3`` rather than ``requests``: a probe every few seconds must not cost the robot the ~4 MiB
more resident memory ``requests`` brings (bench/agent_rss.py). The probe talks to the robot's own
app, so:

* proxies are never used (urllib3 reads no ``HTTP_PROXY``: it must not route ``localhost`` elsewhere);
* redirects are not followed: the status the app answers is the one compared with ``expect_status``;
* no retries: the probe's own ``attempts`` and ``interval_seconds`` are the retry policy;
* the body is never read, so a huge or endless body costs nothing;
* ``timeout_seconds`` bounds the connect and each read; a server that accepts and never answers
  fails at it.
"""

from __future__ import annotations

from fleetcd.errors import TransportError

USER_AGENT = "fleetcd-agent health probe"


def get_status(url: str, *, timeout_seconds: float) -> int:
    """The HTTP status ``url`` answers with; :class:`TransportError` naming the URL when none came."""
    import urllib3  # here: a robot whose releases probe nothing over HTTP never pays for it

    with urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds)) as pool:
        try:
            response = pool.urlopen(
                "GET",
                url,
                redirect=False,
                retries=False,
                preload_content=False,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            )
        # NewConnectionError (refused, unresolvable) is a subclass of the timeouts: it goes first.
        except urllib3.exceptions.NewConnectionError as exc:
            raise TransportError(f"GET {url}: cannot connect: {exc}") from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise TransportError(f"GET {url}: no answer within {timeout_seconds:g} s") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransportError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        response.close()  # the pool closes on exit anyway; the body stays unread
        return response.status
