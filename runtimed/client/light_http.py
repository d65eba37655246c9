"""One HTTP request on a socket of its own, for clients that must start fast.

``runt run`` submits a run and follows it with a handful of requests, and its start counts against the
run's first cell (issue 16). httpx's import costs more than the whole run of a small notebook and
``http.client`` (which loads the email package and ssl) a third of the budget, so a plain ``http://``
request is written here on a socket: HTTP/1.1, ``Connection: close``, the body read to the end (sized by
``Content-Length`` or chunked). ``https://`` goes through ``http.client``, certificates verified.
Everything else uses httpx. The error registry loads only when there is an error to raise.
"""

from __future__ import annotations

import json
import socket

TYPE_CHECKING = False  # typing's flag without importing typing (see runtimed/__init__.py)
if TYPE_CHECKING:
    from typing import Any

    from runtimed.errors import DaemonTimeoutError


class Timeout(Exception):
    """The daemon did not answer in time (it may still act on the request)."""


class _NotHttp(Exception):
    """What answered is not an HTTP server."""


def request(url: str, method: str, path: str, *, headers: dict[str, str] | None = None, body: Any = None,
            params: dict[str, Any] | None = None, timeout: float = 60.0) -> tuple[int, bytes]:
    """``(status, body)`` of one request to ``url`` (``http://`` or ``https://``, certificates verified).

    Raises DaemonNotRunningError when no connection can be made or what answers is not HTTP, :class:`Timeout`
    when no answer comes."""
    scheme, host, port, prefix = _split(url)
    if params:
        from urllib.parse import urlencode

        path += f"?{urlencode(params)}"
    target = prefix.rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    sent = dict(headers or {})
    if data is not None:
        sent["Content-Type"] = "application/json"
    try:
        if scheme == "https":
            return _https(host, port, method, target, data, sent, timeout)
        return _http(host, port or 80, method, target, data, sent, timeout)
    except TimeoutError:
        raise Timeout(f"{method} {path}") from None
    except (ConnectionRefusedError, socket.gaierror) as exc:
        from runtimed.errors import DaemonNotRunningError

        raise DaemonNotRunningError(f"cannot reach the daemon at {url}: {exc}") from None
    except ConnectionError as exc:  # the daemon closed the connection or went away before it answered
        from runtimed.errors import DaemonNotRunningError

        raise DaemonNotRunningError(f"the daemon at {url} closed the connection before answering {method} {path}: "
                                    f"{exc}; see `runt daemon status`") from None
    except _NotHttp as exc:  # the port now belongs to another program
        from runtimed.errors import DaemonNotRunningError

        raise DaemonNotRunningError(f"{url} did not answer as a runtimed daemon ({exc}); is its port now used by "
                                    "another program? Start the daemon with `runt daemon start`") from None


def _split(url: str) -> tuple[str, str, int | None, str]:
    """Scheme, host, port and path of a daemon URL. The usual ``http://HOST:PORT`` is split by hand: the plain
    ``runt run`` submits before anything else loads, and ``urllib.parse`` is 5 ms of its start here."""
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    host, _, port = netloc.partition(":")
    if scheme == "http" and host and port.isdigit() and not any(c in url for c in "@[]?#%\\ "):
        return scheme, host, int(port), slash + path
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "127.0.0.1", parts.port, parts.path


def _http(host: str, port: int, method: str, target: str, data: bytes | None, headers: dict[str, str],
          timeout: float) -> tuple[int, bytes]:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
             f"Content-Length: {len(data or b'')}", *(f"{k}: {v}" for k, v in headers.items())]
    with _connect(host, port, timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (data or b""))
        chunks = []
        try:
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
        except ConnectionResetError:  # a peer that closes without reading the request: judge what it sent
            if not chunks:
                raise
    return _response(b"".join(chunks))


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    """A connection to ``host``; an IP address (the local daemon's 127.0.0.1) skips the name lookup, whose
    IDNA encoding of the name would load three modules into a client that must start fast."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection((host, port), timeout=timeout)


def _response(raw: bytes) -> tuple[int, bytes]:
    """The status and body of a whole HTTP/1.1 response (read to the connection's end)."""
    if not raw:
        raise ConnectionResetError("no answer")
    head, separator, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    version, _, status = status_line.partition(b" ")
    if not version.startswith(b"HTTP/1.") or not status[:3].isdigit():
        raise _NotHttp(repr(raw[:40]))
    if not separator:
        raise ConnectionResetError("the answer ended inside its headers")
    fields = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        return int(status[:3]), _unchunked(rest)
    length = fields.get(b"content-length")
    if length is not None:
        if not length.isdigit() or len(rest) < int(length):
            raise ConnectionResetError("the answer ended before its body")
        rest = rest[:int(length)]
    return int(status[:3]), rest


def _unchunked(data: bytes) -> bytes:
    body: list[bytes] = []
    at = 0
    while True:
        line_end = data.find(b"\r\n", at)
        if line_end < 0:
            raise ConnectionResetError("the answer ended inside a chunk")
        size = int(data[at:line_end].split(b";")[0], 16)
        if size == 0:
            return b"".join(body)
        start = line_end + 2
        if len(data) < start + size:
            raise ConnectionResetError("the answer ended inside a chunk")
        body.append(data[start:start + size])
        at = start + size + 2


def _https(host: str, port: int | None, method: str, target: str, data: bytes | None, headers: dict[str, str],
           timeout: float) -> tuple[int, bytes]:
    import http.client

    connection = http.client.HTTPSConnection(host, port, timeout=timeout)
    try:
        connection.request(method, target, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    except http.client.HTTPException as exc:
        raise _NotHttp(repr(exc)) from None
    finally:
        connection.close()


def bearer(token: str) -> dict[str, str]:
    """The header that carries the daemon's token."""
    return {"Authorization": f"Bearer {token}"}


def daemon_timeout(url: str, method: str, path: str, timeout: float | None) -> DaemonTimeoutError:
    """The error for a request the daemon took too long to answer (it may still act on it: not retried)."""
    from runtimed.errors import DaemonTimeoutError

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
    from runtimed.errors import from_dict

    raise from_dict(error, status)
