"""The daemon's front door against a real daemon over real sockets: Host and Origin checks on HTTP
and the sync WebSocket, the cookie's scope and CSRF rule, the token checked before a body is read,
bounded bodies, the header-read timeout, page headers, the OpenAPI error answers, and the bind rule.
(The same attacks from a real browser page: tests/test_web_security.py.)
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import DaemonProcess, running_daemon
from websockets.asyncio.client import connect

from runtimed.schema.limits import Limits
from runtimed.server.auth import cookie_name

EXTRA_ORIGIN = "https://notebooks.example.com"
HEADER_TIMEOUT = 2.0
DEADLINE = 30.0
"""Seconds any wait below may take at most (a bound on a condition, never a sleep)."""
MB = 1024 * 1024
ALICE = {"id": "alice", "kind": "human", "name": "Alice"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon (default body limit) for the module, with one extra trusted origin."""
    home = tmp_path_factory.mktemp("security") / "home"
    home.mkdir()
    with running_daemon(home, "--no-runtimes", "--header-timeout", str(HEADER_TIMEOUT),
                        env={"RUNTIMED_ALLOWED_ORIGINS": EXTRA_ORIGIN}) as proc:
        yield proc


@pytest.fixture
def port(daemon: DaemonProcess) -> int:
    return httpx.URL(daemon.url).port


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[httpx.Client]:
    """No credential of its own: each test says which one it sends."""
    with httpx.Client(base_url=daemon.url, timeout=30) as c:
        yield c


def bearer(daemon: DaemonProcess, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {daemon.token}", **extra}


def cookie(daemon: DaemonProcess, **extra: str) -> dict[str, str]:
    return {"Cookie": f"{cookie_name(httpx.URL(daemon.url).port)}={daemon.token}", **extra}


def assert_error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code, error
    return error["message"]


def exists(client: httpx.Client, daemon: DaemonProcess, notebook_id: str) -> bool:
    r = client.get(f"/api/notebooks/{notebook_id}", headers=bearer(daemon))
    assert r.status_code in (200, 404), r.text
    return r.status_code == 200


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def ws_url(daemon: DaemonProcess, notebook_id: str) -> str:
    return f"ws{daemon.url[4:]}/api/notebooks/{notebook_id}/sync"


async def ws_hello(daemon: DaemonProcess, notebook_id: str, headers: dict[str, str]) -> dict[str, Any]:
    async with connect(ws_url(daemon, notebook_id), additional_headers=headers, open_timeout=DEADLINE) as ws:
        await ws.send(orjson.dumps({"type": "hello", "since": 0, "actor": ALICE}).decode())
        return orjson.loads(await asyncio.wait_for(ws.recv(), DEADLINE))


def ws_refused(daemon: DaemonProcess, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """The status and error body of a WebSocket handshake that must be refused (raw, so that any Host can be sent)."""
    port = httpx.URL(daemon.url).port
    lines = {"Host": f"127.0.0.1:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13", **headers}
    head = f"GET /api/notebooks/nb-{uuid.uuid4().hex[:8]}/sync HTTP/1.1\r\n"
    with _raw_request(port, head + "".join(f"{k}: {v}\r\n" for k, v in lines.items()) + "\r\n") as sock:
        status, body = _read_response(sock)
    assert status != 101
    return status, orjson.loads(body)["error"]


# -- Host (DNS rebinding) ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "[::1]", "LOCALHOST"])
def test_the_daemons_own_host_names_are_served(client: httpx.Client, port: int, name: str) -> None:
    assert client.get("/health", headers={"Host": f"{name}:{port}"}).status_code == 200


@pytest.mark.parametrize("host", ["attacker.example:{port}", "127.0.0.1:1", "localhost", "127.0.0.1.nip.io:{port}"])
def test_a_foreign_host_header_is_refused_on_http_and_websocket(client: httpx.Client, daemon: DaemonProcess,
                                                               port: int, host: str) -> None:
    host = host.format(port=port)
    message = assert_error(client.get("/health", headers={"Host": host}), 400, "invalid_host")
    assert host in message and f"127.0.0.1:{port}" in message and "RUNTIMED_ALLOWED_ORIGINS" in message
    nb = f"host-{uuid.uuid4().hex[:8]}"
    r = client.post("/api/notebooks", json={"id": nb}, headers=bearer(daemon, Host=host))
    assert_error(r, 400, "invalid_host")
    assert not exists(client, daemon, nb)
    status, error = ws_refused(daemon, bearer(daemon, Host=host))
    assert status == 400 and error["code"] == "invalid_host"


def test_the_host_of_an_allowed_origin_is_served(client: httpx.Client) -> None:
    assert client.get("/health", headers={"Host": "notebooks.example.com"}).status_code == 200


# -- Origin and the cookie (cross-origin writes, CSRF) --------------------------------------------


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{other}", "http://localhost:{other}", "http://evil.example",
                                    "null", "https://127.0.0.1:{port}"])
@pytest.mark.parametrize("credential", ["bearer", "cookie"])
def test_a_write_from_another_origin_is_refused_and_nothing_is_stored(
        client: httpx.Client, daemon: DaemonProcess, port: int, origin: str, credential: str) -> None:
    origin = origin.format(other=port + 1 if port < 65535 else port - 1, port=port)
    headers = (bearer if credential == "bearer" else cookie)(daemon, Origin=origin)
    nb = f"xo-{uuid.uuid4().hex[:8]}"
    message = assert_error(client.post("/api/notebooks", json={"id": nb}, headers=headers), 403, "cross_origin")
    assert origin in message and "RUNTIMED_ALLOWED_ORIGINS" in message
    r = client.post("/api/notebooks/import", params={"id": nb}, content=b'{"cells": []}', headers=headers)
    assert_error(r, 403, "cross_origin")
    assert not exists(client, daemon, nb)
    client.post("/api/notebooks", json={"id": nb}, headers=bearer(daemon)).raise_for_status()
    assert_error(client.delete(f"/api/notebooks/{nb}", headers=headers), 403, "cross_origin")
    assert exists(client, daemon, nb)  # not deleted
    status, error = ws_refused(daemon, (bearer if credential == "bearer" else cookie)(daemon, Origin=origin))
    assert status == 403 and error["code"] == "cross_origin"


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{port}", "http://localhost:{port}", "http://[::1]:{port}",
                                    EXTRA_ORIGIN])
def test_the_daemons_own_origins_may_write_with_the_cookie(client: httpx.Client, daemon: DaemonProcess, port: int,
                                                           origin: str) -> None:
    headers = cookie(daemon, Origin=origin.format(port=port))
    nb = f"own-{uuid.uuid4().hex[:8]}"
    assert client.post("/api/notebooks", json={"id": nb}, headers=headers).status_code == 201
    assert asyncio.run(ws_hello(daemon, nb, headers))["type"] == "welcome"
    assert client.delete(f"/api/notebooks/{nb}", headers=headers).status_code == 200


def test_the_cookie_alone_reads_but_changes_nothing_without_an_origin(client: httpx.Client,
                                                                      daemon: DaemonProcess) -> None:
    nb = f"csrf-{uuid.uuid4().hex[:8]}"
    message = assert_error(client.post("/api/notebooks", json={"id": nb}, headers=cookie(daemon)), 403, "cross_origin")
    assert "Origin" in message and "Bearer" in message
    assert not exists(client, daemon, nb)
    status, error = ws_refused(daemon, cookie(daemon))
    assert status == 403 and error["code"] == "cross_origin"
    assert client.get("/api/status", headers=cookie(daemon)).status_code == 200  # reads are not writes


def test_tools_without_an_origin_keep_working_with_the_bearer_token(client: httpx.Client,
                                                                    daemon: DaemonProcess) -> None:
    nb = f"tool-{uuid.uuid4().hex[:8]}"
    assert client.post("/api/notebooks", json={"id": nb}, headers=bearer(daemon)).status_code == 201
    assert asyncio.run(ws_hello(daemon, nb, bearer(daemon)))["type"] == "welcome"


def test_another_daemons_cookie_is_not_this_daemons(client: httpx.Client, daemon: DaemonProcess, port: int) -> None:
    for name in ("runtimed_token", cookie_name(port + 1)):
        headers = {"Cookie": f"{name}={daemon.token}", "Origin": daemon.url}
        assert_error(client.get("/api/status", headers=headers), 401, "unauthorized")


def test_the_login_cookie_is_per_port_httponly_strict_and_for_the_whole_site(client: httpx.Client,
                                                                              daemon: DaemonProcess, port: int) -> None:
    r = client.get("/", params={"token": daemon.token, "notebook": "nb-x"})
    assert r.status_code == 303 and r.headers["location"] == "/?notebook=nb-x"
    attributes = [a.strip().lower() for a in r.headers["set-cookie"].split(";")]
    assert attributes[0] == f"{cookie_name(port)}={daemon.token}".lower()
    assert {"httponly", "samesite=strict", "path=/"} <= set(attributes)


# -- the token before the body, and bounded bodies ------------------------------------------------


def _raw_request(port: int, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    sock.sendall(head.encode())
    return sock


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split(b" ")[1]), rest


def _send_until_refused(sock: socket.socket, total: int) -> int:
    """Push up to ``total`` bytes of body; how many went out before the daemon closed the connection."""
    chunk = b"x" * MB
    sent = 0
    try:
        while sent < total:
            sent += sock.send(chunk)
    except OSError:
        pass
    return sent


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_400_mb_post_with_a_wrong_token_is_refused_before_its_body(daemon: DaemonProcess, port: int,
                                                                     framing: str) -> None:
    size = 400 * MB
    length = f"Content-Length: {size}" if framing == "content-length" else "Transfer-Encoding: chunked"
    before = rss_bytes(daemon.proc.pid)
    sock = _raw_request(port, f"POST /api/notebooks/import HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                              f"Authorization: Bearer wrong\r\nContent-Type: application/json\r\n{length}\r\n\r\n")
    with sock:
        status, body = _read_response(sock)  # answered before a single byte of the body was sent
        assert status == 401 and orjson.loads(body)["error"]["code"] == "unauthorized"
        _send_until_refused(sock, size)
    assert rss_bytes(daemon.proc.pid) - before < 50 * MB
    assert httpx.get(f"{daemon.url}/health").status_code == 200


def test_a_body_over_the_limit_is_413_before_it_is_read(daemon: DaemonProcess, port: int) -> None:
    limit = Limits.from_env().max_message_bytes  # the default: one sync message's limit
    before = rss_bytes(daemon.proc.pid)
    sock = _raw_request(port, f"POST /api/notebooks/import HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                              f"Authorization: Bearer {daemon.token}\r\nContent-Length: {limit + 1}\r\n\r\n")
    with sock:
        status, body = _read_response(sock)
        error = orjson.loads(body)["error"]
        assert status == 413 and error["code"] == "payload_too_large"
        assert str(limit + 1) in error["message"] and str(limit) in error["message"]
        assert "RUNTIMED_MAX_BODY_BYTES" in error["message"]
        _send_until_refused(sock, limit + 1)
    assert rss_bytes(daemon.proc.pid) - before < 50 * MB


def test_a_chunked_body_is_counted_as_it_streams(daemon: DaemonProcess, port: int) -> None:
    limit = Limits.from_env().max_message_bytes
    sock = _raw_request(port, f"POST /api/notebooks/import HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                              f"Authorization: Bearer {daemon.token}\r\nTransfer-Encoding: chunked\r\n\r\n")
    with sock:
        chunk = b"%x\r\n%s\r\n" % (MB, b"x" * MB)
        for _ in range(limit // MB + 1):
            sock.sendall(chunk)
        status, body = _read_response(sock)
    assert status == 413 and orjson.loads(body)["error"]["code"] == "payload_too_large"


def test_a_chunked_body_within_the_limit_is_served(client: httpx.Client, daemon: DaemonProcess) -> None:
    nb = f"chunked-{uuid.uuid4().hex[:8]}"
    document = orjson.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                             "cells": [{"cell_type": "markdown", "metadata": {}, "source": "# in chunks"}]})
    r = client.post("/api/notebooks/import", params={"id": nb}, headers=bearer(daemon),
                    content=iter([document[:10], document[10:]]))  # an iterator: sent chunked
    assert r.status_code == 201, r.text
    assert exists(client, daemon, nb)


def test_the_body_limit_is_configurable(home: Path) -> None:
    proc = DaemonProcess(home, "--no-runtimes", "--max-body-bytes", "1000")
    proc.start()
    try:
        with httpx.Client(base_url=proc.url, headers={"Authorization": f"Bearer {proc.token}"}) as c:
            r = c.post("/api/notebooks", json={"id": "big", "title": "x" * 2000})
            assert "1000 bytes" in assert_error(r, 413, "payload_too_large")
            assert c.post("/api/notebooks", json={"id": "small", "title": "x"}).status_code == 201
    finally:
        proc.stop()


# -- header-read timeout (slowloris) --------------------------------------------------------------


def _wait_for_eof(sock: socket.socket, deadline: float) -> bytes:
    received = b""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)  # raises TimeoutError past the deadline
        if not chunk:
            return received
        received += chunk


def test_connections_that_never_finish_their_headers_are_closed(daemon: DaemonProcess, port: int) -> None:
    asyncio.run(_slowloris(daemon, port))
    assert httpx.get(f"{daemon.url}/health", timeout=DEADLINE).status_code == 200


async def _slowloris(daemon: DaemonProcess, port: int) -> None:
    async with connect(ws_url(daemon, "slowloris"), additional_headers=bearer(daemon)) as ws:
        await ws.send(orjson.dumps({"type": "hello", "since": 0, "actor": ALICE}).decode())
        assert orjson.loads(await ws.recv())["type"] == "welcome"
        half = f"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthoriz"
        slow = [_raw_request(port, half) for _ in range(50)]
        kept_alive = _raw_request(port, f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
        try:
            assert _read_response(kept_alive)[0] == 200
            kept_alive.sendall(b"GET /hea")  # a second request on the same connection that never completes
            async with httpx.AsyncClient(timeout=DEADLINE) as c:  # served meanwhile
                assert (await c.get(f"{daemon.url}/health")).status_code == 200
            deadline = time.monotonic() + DEADLINE
            for sock in [*slow, kept_alive]:
                received = await asyncio.to_thread(_wait_for_eof, sock, deadline)
                assert received.startswith(b"HTTP/1.1 408 "), received
        finally:
            for sock in [*slow, kept_alive]:
                sock.close()
        # The WebSocket, open since before the slow connections (which lived past the timeout), is not cut.
        await ws.send('{"type":"ping"}')
        assert orjson.loads(await asyncio.wait_for(ws.recv(), DEADLINE))["type"] == "pong"


def test_endless_headers_are_refused(port: int) -> None:
    sock = _raw_request(port, f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n")
    with sock:
        sock.sendall(b"".join(f"X-Filler-{i}: {'y' * 1000}\r\n".encode() for i in range(66)))  # never ending
        assert _wait_for_eof(sock, time.monotonic() + DEADLINE).startswith(b"HTTP/1.1 431 ")


# -- page headers ---------------------------------------------------------------------------------


def test_the_page_has_a_strict_policy_and_no_referrer(client: httpx.Client, daemon: DaemonProcess) -> None:
    r = client.get("/", headers=cookie(daemon))
    assert r.status_code in (200, 503)
    csp = {d.split()[0]: d.split()[1:] for d in (p.strip() for p in r.headers["content-security-policy"].split(";"))}
    assert csp["script-src"] == ["'self'"] and csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["form-action"] == ["'none'"] and csp["object-src"] == ["'none'"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    api = client.get("/api/status", headers=bearer(daemon))
    assert api.headers["x-content-type-options"] == "nosniff" and api.headers["x-frame-options"] == "DENY"


def test_the_output_frame_document_is_sandboxed_by_its_own_policy(client: httpx.Client) -> None:
    r = client.get("/static/frame.html")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert csp.startswith("sandbox allow-scripts;") and "allow-same-origin" not in csp
    assert r.headers["x-frame-options"] == "SAMEORIGIN"


# -- OpenAPI ---------------------------------------------------------------------------------------


def test_openapi_documents_errors_and_content_types(client: httpx.Client, daemon: DaemonProcess) -> None:
    spec = client.get("/openapi.json", headers=bearer(daemon)).json()
    error = spec["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]
    paths = spec["paths"]
    seen: set[str] = set()
    for path, operations in paths.items():
        for method, op in operations.items():
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    seen.add(status)
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
            if path != "/health":
                assert {"400", "401"} <= set(op["responses"]), (method, path)
    assert {"400", "401", "403", "404", "409", "413", "422"} <= seen
    create = paths["/api/notebooks"]["post"]["responses"]
    assert {"409", "413", "403", "422"} <= set(create)
    assert "404" in paths["/api/notebooks/{notebook_id}"]["get"]["responses"]
    export = paths["/api/notebooks/{notebook_id}/export"]["get"]["responses"]["200"]["content"]
    assert list(export) == ["application/x-ipynb+json"]
    snapshot = paths["/api/notebooks/{notebook_id}/snapshot"]["get"]["responses"]["200"]["content"]
    assert snapshot["application/vnd.sqlite3"]["schema"]["format"] == "binary"
    events = paths["/api/notebooks/{notebook_id}/events"]["get"]["responses"]["200"]["content"]["application/json"]
    assert events["schema"]["required"] == ["head", "events"]
    assert "application/x-ipynb+json" in paths["/api/notebooks/import"]["post"]["requestBody"]["content"]


def test_the_documented_content_types_are_the_real_ones(client: httpx.Client, daemon: DaemonProcess) -> None:
    nb = f"types-{uuid.uuid4().hex[:8]}"
    client.post("/api/notebooks", json={"id": nb}, headers=bearer(daemon)).raise_for_status()
    assert client.get(f"/api/notebooks/{nb}/export", headers=bearer(daemon)).headers["content-type"] \
        == "application/x-ipynb+json"
    assert client.get(f"/api/notebooks/{nb}/snapshot", headers=bearer(daemon)).headers["content-type"] \
        == "application/vnd.sqlite3"
    assert client.get(f"/api/notebooks/{nb}/events", headers=bearer(daemon)).headers["content-type"] \
        == "application/json"


# -- binding beyond loopback ----------------------------------------------------------------------


def _runtimed(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtimed.server.main", "--home", str(home), "--port", "0", *args],
                          capture_output=True, text=True, timeout=DEADLINE)


def test_a_non_loopback_bind_needs_tls_or_an_explicit_flag(home: Path) -> None:
    r = _runtimed(home, "--host", "0.0.0.0")
    assert r.returncode == 2
    assert "--tls-cert" in r.stderr and "--insecure-bind" in r.stderr
    r = _runtimed(home, "--tls-cert", str(home / "cert.pem"))
    assert r.returncode == 2 and "--tls-key" in r.stderr
    r = _runtimed(home, "--allowed-origins", "notebooks.example.com/path")
    assert r.returncode == 2 and "scheme://host[:port]" in r.stderr


def test_an_insecure_bind_serves_the_name_the_browser_used(home: Path) -> None:
    proc = DaemonProcess(home, "--no-runtimes", "--host", "0.0.0.0", "--insecure-bind")
    proc.start()
    try:
        port = httpx.URL(proc.url).port
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            lan = f"workstation.lan:{port}"
            assert c.get("/health", headers={"Host": lan}).status_code == 200  # any name: the bind is deliberate
            ok = c.post("/api/notebooks", json={"id": "lan"},
                        headers={"Authorization": f"Bearer {proc.token}", "Host": lan, "Origin": f"http://{lan}"})
            assert ok.status_code == 201, ok.text
            refused = c.post("/api/notebooks", json={"id": "lan2"},
                             headers={"Authorization": f"Bearer {proc.token}", "Host": lan,
                                      "Origin": f"http://other.lan:{port}"})
            assert_error(refused, 403, "cross_origin")
    finally:
        proc.stop()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_tls_serves_https_and_a_secure_cookie(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # clients (and the test) trust this certificate
    proc = DaemonProcess(home, "--no-runtimes", "--tls-cert", str(cert_file), "--tls-key", str(key_file))
    proc.start()
    try:
        assert proc.url.startswith("https://127.0.0.1:")
        with httpx.Client(base_url=proc.url, verify=ssl.create_default_context(cafile=str(cert_file))) as c:
            assert c.get("/health").status_code == 200
            r = c.get("/", params={"token": proc.token})
            assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
            assert c.post("/api/notebooks", json={"id": "tls"},
                          headers={"Authorization": f"Bearer {proc.token}", "Origin": proc.url}).status_code == 201
    finally:
        proc.stop()
