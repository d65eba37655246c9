"""A small REST client for the daemon that turns error bodies into RuntimedError.

With several daemons of one deployment (``DaemonEndpoint.alternates``), a request whose connection
cannot be made goes to the next daemon that answers: nothing was sent, so retrying it is safe even for
a POST. A request that fails after it was sent is not retried (the daemon may have acted on it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from runtimed.client.discovery import DaemonEndpoint, failover
from runtimed.client.light_http import daemon_timeout, json_or_error
from runtimed.errors import DaemonNotRunningError

if TYPE_CHECKING:
    from runtimed.schema.replica import Replica


def raise_for_error(response: httpx.Response) -> None:
    """Raise the daemon's error body (``{"error": {code, message}}``) of a 4xx/5xx answer as RuntimedError."""
    if response.status_code >= 400:
        json_or_error(response.status_code, response.content)


class DaemonHTTP:
    def __init__(self, endpoint: DaemonEndpoint, timeout: float = 60.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.client = self._client()

    def _client(self) -> httpx.Client:
        # a plain-http daemon needs no TLS context: building one loads the CA bundle (40-200 ms per client)
        return httpx.Client(base_url=self.endpoint.url, headers=self.endpoint.headers(), timeout=self.timeout,
                            verify=not self.endpoint.url.startswith("http://"))

    def _fail_over(self) -> bool:
        """Move to another daemon of the deployment that answers; False when there is none."""
        if not self.endpoint.alternates:
            return False
        found = failover(self.endpoint)
        if found is None or found.url == self.endpoint.url:
            return False
        self.client.close()
        self.endpoint = found
        self.client = self._client()
        return True

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        tried = [self.endpoint.url]
        while True:
            try:
                response = self.client.request(method, path, **kwargs)
                break
            except httpx.ConnectError:
                if len(tried) < len(self.endpoint.urls) and self._fail_over() and self.endpoint.url not in tried:
                    tried.append(self.endpoint.url)
                    continue
                where = f"any of the daemons {', '.join(self.endpoint.urls)}" if self.endpoint.alternates else \
                    f"the daemon at {self.endpoint.url}"
                raise DaemonNotRunningError(f"cannot reach {where}; start it with `runt daemon start`") from None
            except httpx.TimeoutException:
                raise daemon_timeout(self.endpoint.url, method, path, kwargs.get("timeout", self.timeout)) from None
        raise_for_error(response)
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs).json()

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs).json()

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs).json()

    def close(self) -> None:
        self.client.close()


def _referenced_artifacts(replica: Replica) -> set[str]:
    """The artifacts an export of ``replica``'s notebook would read."""
    from runtimed.formats import notebook_from_projection

    found: set[str] = set()

    def note(sha: str) -> bytes:
        found.add(sha)
        return b""

    replica.view(notebook_from_projection, resolve_artifact=note)
    return found


PREFETCH_ROUNDS = 8
"""Scans of a notebook for artifacts ``prefetch_artifacts`` makes at most (each after fetching what the last found)."""


async def prefetch_artifacts(replica: Replica, fetch: Callable[[str], bytes]) -> Callable[[str], bytes]:
    """A ``resolve_artifact`` for exporting ``replica``: the artifacts its notebook references, each fetched
    with ``fetch`` (a blocking request) in a worker thread first. A client may live in the daemon it asks
    (MCP over HTTP, run jobs), where a blocking request on the event loop would wait for itself."""
    fetched: dict[str, bytes] = {}
    for _ in range(PREFETCH_ROUNDS):  # outputs that arrive during the fetches are found by the next round
        missing = _referenced_artifacts(replica) - fetched.keys()
        if not missing:  # the caller exports right away, with no await between: it sees this very state
            break
        for sha in missing:
            fetched[sha] = await asyncio.to_thread(fetch, sha)
    # a notebook that kept gaining artifacts through every round: the newest are fetched as they are met
    return lambda sha: fetched[sha] if sha in fetched else fetch(sha)
