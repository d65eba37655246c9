"""One HTTP request with the standard library, for clients that must start fast.

``runt run`` submits a run and follows it with a handful of requests; importing httpx (and its
async transport) costs more than the whole run of a small notebook, so these requests, and the
daemon's health check of discovery, use ``http.client`` instead. Everything else uses httpx.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import urlencode, urlsplit

from runtimed.errors import DaemonNotRunningError, DaemonTimeoutError, from_dict


class Timeout(Exception):
    """The daemon did not answer in time (it may still act on the request)."""


def request(url: str, method: str, path: str, *, headers: dict[str, str] | None = None, body: Any = None,
            params: dict[str, Any] | None = None, timeout: float = 60.0) -> tuple[int, bytes]:
    """``(status, body)`` of one request to ``url`` (``http://`` or ``https://``, certificates verified).

    Raises DaemonNotRunningError when no connection can be made or what answers is not HTTP, :class:`Timeout`
    when no answer comes."""
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    target = (parts.path.rstrip("/") + path) + (f"?{urlencode(params)}" if params else "")
    data = None if body is None else json.dumps(body).encode()
    sent = dict(headers or {})
    if data is not None:
        sent["Content-Type"] = "application/json"
    try:
        try:
            connection.request(method, target, body=data, headers=sent)
        except (ConnectionError, socket.gaierror) as exc:
            raise DaemonNotRunningError(f"cannot reach the daemon at {url}: {exc}") from None
        response = connection.getresponse()
        return response.status, response.read()
    except TimeoutError:
        raise Timeout(f"{method} {path}") from None
    except ConnectionError as exc:  # the daemon closed the connection or went away before it answered
        raise DaemonNotRunningError(f"the daemon at {url} closed the connection before answering {method} {path}: "
                                    f"{exc}; see `runt daemon status`") from None
    except http.client.HTTPException as exc:  # not HTTP: the port now belongs to another program
        raise DaemonNotRunningError(f"{url} did not answer as a runtimed daemon ({exc!r}); is its port now used by "
                                    "another program? Start the daemon with `runt daemon start`") from None
    finally:
        connection.close()


def daemon_timeout(url: str, method: str, path: str, timeout: float | None) -> DaemonTimeoutError:
    """The error for a request the daemon took too long to answer (it may still act on it: not retried)."""
    within = f" within {timeout:g} s" if isinstance(timeout, int | float) else ""
    return DaemonTimeoutError(f"the daemon at {url} did not answer {method} {path}{within}; it is overloaded or "
                              "stuck: retry, and see `runt daemon status` and `runt daemon logs`")


def json_or_error(status: int, content: bytes) -> Any:
    """The JSON answer, or the daemon's error body (``{"error": {code, message}}``) of a 4xx/5xx answer raised
    as RuntimedError."""
    if status < 400:
        return json.loads(content)
    try:
        error = json.loads(content)["error"]
        error = {"code": error["code"], "message": error["message"]}
    except (ValueError, KeyError, TypeError):
        error = {"code": "http_error", "message": f"{status} {content[:200].decode(errors='replace')}"}
    raise from_dict(error, status)
