"""People and roles: who a token belongs to, what they may do with each notebook, and share links.

The daemon's first token (``$RUNTIMED_HOME/token``) is the owner's: it may do everything, and
the actors it names are taken as given (the owner's own tools and runtimes). Every other token
belongs to a *principal* kept in ``$RUNTIMED_HOME/people.json`` (0600; only sha256 digests of
tokens are stored): a named user, agent or runtime with a role for all notebooks and/or roles for
single notebooks, or a read-only share link of one notebook.

Roles are ordered: ``viewer`` (read) < ``runner`` (run, interrupt, restart, answer input) <
``editor`` (change cells and metadata, resolve approvals, create notebooks) < ``owner`` (delete,
and everything else). A principal of kind ``runtime`` may in addition push the events a runtime
writes (claims, outputs, session events) for the notebooks it is granted.

The actor of every event a principal pushes is bound to it: its kind is the principal's, its name
the principal's, and its id starts with ``<principal>:`` (the client's own id after the colon), so
nobody can write as somebody else. The same rules apply over REST and the sync protocol.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from runtimed.errors import RuntimedError
from runtimed.schema.events import is_valid_id

Role = Literal["viewer", "runner", "editor", "owner"]
Kind = Literal["human", "agent", "runtime", "automation"]
ROLES: tuple[Role, ...] = ("viewer", "runner", "editor", "owner")
KINDS: tuple[Kind, ...] = ("human", "agent", "runtime", "automation")
OWNER = "owner"

RUNNER_EVENTS = frozenset({
    "executionRequested", "executionCancelRequested", "runtimeInterruptRequested", "runtimeRestartRequested",
    "inputReplied", "runtimeSessionEnded", "commUpdateRequested",
})
RUNTIME_EVENTS = frozenset({
    "executionAssigned", "executionStarted", "executionCompleted", "executionRequeued", "outputAdded",
    "streamTextChanged", "streamTailSet", "displayUpdated", "outputsCleared", "runtimeSessionStarted",
    "runtimeStatusChanged", "runtimeSessionEnded", "inputRequested", "commOpened", "commStateChanged", "commCustomMessage", "commClosed",
})
OWNER_EVENTS = frozenset({"notebookCreated"})
"""Creating a notebook needs ``editor`` on it (or for all notebooks); see ``Principal.required_role``."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _rank(role: Role | None) -> int:
    return -1 if role is None else ROLES.index(role)


@dataclass
class Principal:
    """Someone the daemon knows by a token."""

    name: str
    kind: Kind = "human"
    role: Role | None = None
    """The role on every notebook (None: only the notebooks listed in ``notebooks``)."""
    notebooks: dict[str, Role] = field(default_factory=dict)
    is_owner: bool = False
    share_of: str | None = None
    """For a share link: the one notebook it shows (read-only)."""

    def role_on(self, notebook_id: str) -> Role | None:
        if self.is_owner:
            return "owner"
        granted = self.notebooks.get(notebook_id)
        return granted if _rank(granted) >= _rank(self.role) else self.role

    def may(self, notebook_id: str, role: Role) -> bool:
        return _rank(self.role_on(notebook_id)) >= _rank(role)

    def may_everywhere(self, role: Role) -> bool:
        return self.is_owner or _rank(self.role) >= _rank(role)

    def event_allowed(self, notebook_id: str, name: str) -> bool:
        """Whether this principal may push an event of this name to this notebook."""
        held = self.role_on(notebook_id)
        if held is None:
            return False
        if held == "owner":
            return True
        if name in RUNTIME_EVENTS and self.kind == "runtime":
            return True
        if name in RUNNER_EVENTS:
            return _rank(held) >= _rank("runner")
        if name in RUNTIME_EVENTS:
            return False  # outputs and claims come from runtimes
        return _rank(held) >= _rank("editor")

    def bind_actor(self, actor: Any) -> Any:
        """The actor an event of this principal is recorded with (the owner's are taken as given)."""
        if self.is_owner:
            return actor  # as given; a missing or malformed one fails validation as usual
        if not isinstance(actor, dict):
            return self.default_actor()
        claimed = str(actor.get("id") or "")
        prefix = f"{self.name}:"
        if claimed != self.name and not claimed.startswith(prefix):
            claimed = f"{prefix}{claimed}" if claimed else self.name
        return {"id": claimed[:128], "kind": self.kind, "name": self.name}

    def default_actor(self) -> dict[str, Any]:
        return {"id": self.name, "kind": self.kind, "name": self.name}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "role": self.role, "notebooks": dict(self.notebooks),
                "owner": self.is_owner, "share_of": self.share_of}


def forbidden(principal: Principal, what: str) -> RuntimedError:
    return RuntimedError(f"{principal.name} ({principal.role or 'no role'}) may not {what}; ask the daemon's owner "
                         "for a role that allows it (`runt users`)", code="forbidden")


class People:
    """The principals of one daemon, kept in ``people.json`` in its home."""

    def __init__(self, path: Path, owner_token: str) -> None:
        self.path = path
        self._owner = Principal(OWNER, "human", "owner", is_owner=True)
        self._owner_token = owner_token
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except orjson.JSONDecodeError as exc:
            raise RuntimedError(f"{self.path} is not valid JSON ({exc}); fix or remove it", code="invalid_request") \
                from None
        return {r["name"]: r for r in data.get("principals", []) if isinstance(r, dict) and "name" in r}

    def _save(self) -> None:
        body = orjson.dumps({"principals": sorted(self._records.values(), key=lambda r: r["name"])},
                            option=orjson.OPT_INDENT_2)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
        os.replace(tmp, self.path)

    # -- authentication --------------------------------------------------------------------------

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal a token belongs to, or None."""
        if not token:
            return None
        if hmac.compare_digest(token.encode(), self._owner_token.encode()):
            return self._owner
        wanted = digest(token)
        with self._lock:
            for record in self._records.values():
                if hmac.compare_digest(record["digest"], wanted):
                    return self._principal(record)
        return None

    @staticmethod
    def _principal(record: dict[str, Any]) -> Principal:
        return Principal(record["name"], record.get("kind", "human"), record.get("role"),
                         dict(record.get("notebooks") or {}), share_of=record.get("share_of"))

    # -- management (the owner's, through the REST API) ------------------------------------------

    def add(self, name: str, *, kind: str = "human", role: str | None = None,
            notebooks: dict[str, str] | None = None, share_of: str | None = None) -> tuple[Principal, str]:
        """Add a principal; its token (shown once: only its digest is kept)."""
        if not is_valid_id(name) or ":" in name or name == OWNER:
            raise RuntimedError(f"invalid name {name!r}: use letters, digits, '.', '_' or '-' (not 'owner')",
                                code="invalid_request")
        if kind not in KINDS:
            raise RuntimedError(f"invalid kind {kind!r}: use one of {', '.join(KINDS)}", code="invalid_request")
        for value in [role, *(notebooks or {}).values()]:
            if value is not None and value not in ROLES:
                raise RuntimedError(f"invalid role {value!r}: use one of {', '.join(ROLES)}", code="invalid_request")
        for notebook_id in notebooks or {}:
            if not is_valid_id(notebook_id):
                raise RuntimedError(f"invalid notebook id {notebook_id!r}", code="invalid_notebook_id")
        if role is None and not notebooks:
            raise RuntimedError("give a role for all notebooks (--role) or for some (--notebook ID)",
                                code="invalid_request")
        token = secrets.token_urlsafe(32)
        record = {"name": name, "kind": kind, "role": role, "notebooks": dict(notebooks or {}),
                  "share_of": share_of, "digest": digest(token), "created_at": datetime.now(UTC).isoformat()}
        with self._lock:
            if name in self._records:
                raise RuntimedError(f"{name!r} already exists; remove it first (`runt users rm {name}`)",
                                    code="already_exists")
            self._records[name] = record
            self._save()
        return self._principal(record), token

    def remove(self, name: str) -> None:
        with self._lock:
            if self._records.pop(name, None) is None:
                raise RuntimedError(f"no user or share link named {name!r}; list them with `runt users list`",
                                    code="not_found")
            self._save()

    def share(self, notebook_id: str) -> tuple[Principal, str]:
        """A read-only link token for one notebook (revoked by removing its name)."""
        return self.add(f"share-{secrets.token_hex(4)}", role=None, notebooks={notebook_id: "viewer"},
                        share_of=notebook_id)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            records = sorted(self._records.values(), key=lambda r: r["name"])
        return [{k: v for k, v in r.items() if k != "digest"} for r in records]
