"""A small REST client for the daemon that turns error bodies into RuntimedError."""

from __future__ import annotations

from typing import Any

import httpx

from runtimed.client.discovery import DaemonEndpoint
from runtimed.errors import DaemonNotRunningError, from_dict


class DaemonHTTP:
    def __init__(self, endpoint: DaemonEndpoint, timeout: float = 60.0) -> None:
        self.endpoint = endpoint
        # a plain-http daemon needs no TLS context: building one loads the CA bundle (40-200 ms per client)
        self.client = httpx.Client(base_url=endpoint.url, headers=endpoint.headers(), timeout=timeout,
                                   verify=not endpoint.url.startswith("http://"))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise DaemonNotRunningError(
                f"cannot reach the daemon at {self.endpoint.url}; start it with `runt daemon start`"
            ) from None
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                error = {"code": error["code"], "message": error["message"]}
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": f"{response.status_code} {response.text[:200]}"}
            raise from_dict(error, response.status_code)
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs).json()

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs).json()

    def close(self) -> None:
        self.client.close()
