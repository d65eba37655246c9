"""The OpenAPI description, completed with what FastAPI cannot infer from the route functions.

Every route answers errors as ``{"error": {"code", "message"}}`` (the middleware and the
exception handlers), and a few return other content types than JSON: both are added here,
once, to the generated schema, so that clients generated from ``/openapi.json`` are right.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "stable, snake_case (the registry in runtimed/errors.py)"},
            "message": {"type": "string", "description": "what is wrong and how to fix it"},
        },
    }},
}

ERROR_DESCRIPTIONS = {
    400: "Bad request: an invalid id, argument or Host header (invalid_host)",
    401: "Missing or wrong token (unauthorized)",
    403: "Refused: a request from another origin (cross_origin), or a write in a read-only query",
    404: "No such notebook, runtime or approval",
    408: "The query ran longer than its bound (query_timeout)",
    409: "Conflicts with the current state (e.g. the notebook exists, runtimes are disabled)",
    413: "The request body, or the result, is larger than the limit (payload_too_large)",
    422: "The request does not match this description (invalid_request)",
}

_JSON_OBJECT = {"type": "object"}
MEDIA: dict[tuple[str, str], tuple[str, dict[str, Any], str]] = {
    ("get", "/api/notebooks/{notebook_id}/export"):
        ("application/x-ipynb+json", _JSON_OBJECT, "The notebook as an nbformat 4 .ipynb document"),
    ("get", "/api/notebooks/{notebook_id}/snapshot"):
        ("application/vnd.sqlite3", {"type": "string", "format": "binary"},
         "A SQLite database of the projection at the seq in the X-Runtimed-Seq header"),
    ("get", "/api/notebooks/{notebook_id}/events"):
        ("application/json", {"type": "object", "required": ["head", "events"], "properties": {
            "head": {"type": "integer", "description": "the notebook's last seq"},
            "events": {"type": "array", "items": _JSON_OBJECT, "description": "stored events, in seq order"}}},
         "Events after `since` (at most `limit`)"),
}
REQUEST_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/notebooks/import"): {
        "required": True, "description": "an .ipynb document (nbformat 4)",
        "content": {"application/x-ipynb+json": {"schema": _JSON_OBJECT}, "application/json": {"schema": _JSON_OBJECT}},
    },
}
PUBLIC = {"/health"}


def _statuses(method: str, path: str, op: dict[str, Any]) -> list[int]:
    statuses = {400, 401}
    if method != "get":
        statuses |= {403, 413}  # cross-origin writes; bodies above the limit
    if "{" in path:
        statuses.add(404)
    if op.get("parameters") or op.get("requestBody"):
        statuses.add(422)
    if method != "get" and path.startswith(("/api/notebooks", "/api/runtimes", "/api/pool")):
        statuses.add(409)
    if path.endswith("/query"):
        statuses |= {403, 408, 413}
    return sorted(statuses)


def describe(schema: dict[str, Any]) -> dict[str, Any]:
    """Add error answers, content types and the Bearer scheme to a generated schema (in place)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body: ours is an Error
        schemas.pop(unused, None)
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                "description": "the token in $RUNTIMED_HOME/token"}}
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            if (method, path) in MEDIA:
                media, body, description = MEDIA[method, path]
                responses["200"] = {"description": description, "content": {media: {"schema": body}}}
            if (method, path) in REQUEST_BODIES:
                op["requestBody"] = REQUEST_BODIES[method, path]
            if path in PUBLIC:
                responses["400"] = {"description": ERROR_DESCRIPTIONS[400], "content": error_ref}
                continue
            op["security"] = [{"bearer": []}]
            for status in _statuses(method, path, op):
                responses[str(status)] = {"description": ERROR_DESCRIPTIONS[status], "content": error_ref}
    return schema


def document_errors(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the completed description (built once, then cached by FastAPI)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
