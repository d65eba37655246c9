"""The one error registry: every error code, with its HTTP status, its ``runt`` exit code and a hint.

Rejections and failures carry a machine-readable ``code`` (stable, snake_case) and a
human-readable ``message`` that says what is wrong and how to fix it. The same codes
travel in sync-protocol acks, REST error bodies and CLI messages; the server, the
clients and the CLI all translate them through :class:`ErrorCode`, never through a
table of their own. A test checks that every code raised anywhere is registered here.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes of ``runt`` and ``runtimed`` (one list, documented in ``runt --help`` and docs/cli.md)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    DAEMON_NOT_RUNNING = 3
    NOT_FOUND = 4
    REFUSED = 5
    KERNEL_DIED = 6
    TIMEOUT = 7
    START_FAILED = 8

    @property
    def meaning(self) -> str:
        return _EXIT_MEANINGS[self]


_EXIT_MEANINGS = {
    ExitCode.OK: "success",
    ExitCode.FAILURE: "the command failed, or a cell raised an error (runt run, runt exec)",
    ExitCode.USAGE: "bad arguments, options or input (an invalid id or seq, invalid parameters, bad SQL)",
    ExitCode.DAEMON_NOT_RUNNING: "no daemon runs for this home (commands that do not start one)",
    ExitCode.NOT_FOUND: "an unknown notebook, cell, runtime, kernel, run or file",
    ExitCode.REFUSED: "the daemon refused: a wrong token, a write in a read-only query, an existing id, "
                      "a daemon already running for the home",
    ExitCode.KERNEL_DIED: "runt run: the kernel died or the runtime was lost",
    ExitCode.TIMEOUT: "a cell, query or wait took longer than its bound",
    ExitCode.START_FAILED: "a kernel or the daemon could not start (e.g. its port is in use)",
}

_U = ExitCode.USAGE
_N = ExitCode.NOT_FOUND
_R = ExitCode.REFUSED
_F = ExitCode.FAILURE
_T = ExitCode.TIMEOUT


class ErrorCode(enum.Enum):
    """Every error code: ``(code, HTTP status, exit code, hint)``; ``.value`` is the wire code."""

    # -- general -----------------------------------------------------------------------------
    RUNTIMED_ERROR = ("runtimed_error", 400, _F, "")
    NOT_FOUND = ("not_found", 404, _N, "")
    INVALID_REQUEST = ("invalid_request", 422, _U, "see the API description at /docs")
    PAYLOAD_TOO_LARGE = ("payload_too_large", 413, _R, "send less at once, or raise the limit in the daemon's settings")
    UNAUTHORIZED = ("unauthorized", 401, _R, "the token is in $RUNTIMED_HOME/token; `runt open` prints a sign-in URL")
    FORBIDDEN = ("forbidden", 403, _R, "ask the notebook's owner for a role that allows this")
    CROSS_ORIGIN = ("cross_origin", 403, _R, "open the page from the daemon's own URL (`runt open`)")
    INVALID_HOST = ("invalid_host", 400, _R, "open the daemon as 127.0.0.1:PORT or localhost:PORT, "
                                             "or list its name in RUNTIMED_ALLOWED_ORIGINS")
    HTTP_ERROR = ("http_error", 502, _F, "")
    CLI_ERROR = ("cli_error", 400, _F, "")
    WRONG_THREAD = ("wrong_thread", 500, _F, "use the Session from the thread (or event loop) that created it")
    # -- daemon and connection ---------------------------------------------------------------
    DAEMON_NOT_RUNNING = ("daemon_not_running", 503, ExitCode.DAEMON_NOT_RUNNING, "start it with `runt daemon start`")
    DAEMON_START_FAILED = ("daemon_start_failed", 503, ExitCode.START_FAILED, "see `runt daemon logs`")
    ALREADY_RUNNING = ("already_running", 409, _R, "stop it with `runt daemon stop`")
    ALREADY_EXISTS = ("already_exists", 409, _R, "pick another name, or remove the old one first")
    PORT_IN_USE = ("port_in_use", 409, ExitCode.START_FAILED, "pass --port N, or --port auto")
    CONNECTION_LOST = ("connection_lost", 503, _F, "check that the daemon runs (`runt daemon status`)")
    DAEMON_TIMEOUT = ("daemon_timeout", 504, _T,
                      "the daemon is overloaded or stuck: retry, and see `runt daemon status` and `runt daemon logs`")
    NOT_CONNECTED = ("not_connected", 409, _F, "call connect() first, or use the session as a context manager")
    # -- notebooks and the log ---------------------------------------------------------------
    NOTEBOOK_NOT_FOUND = ("notebook_not_found", 404, _N, "list notebooks with `runt notebooks`")
    NOTEBOOK_EXISTS = ("notebook_exists", 409, _R, "pick another id")
    NOTEBOOK_NOT_CREATED = ("notebook_not_created", 409, _F, "push notebookCreated first")
    INVALID_NOTEBOOK_ID = ("invalid_notebook_id", 400, _U,
                           "use 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit")
    INVALID_NOTEBOOK = ("invalid_notebook", 400, _F, "check that the file is a valid .ipynb or YAML notebook")
    UNKNOWN_FORMAT = ("unknown_format", 400, _U, "use .ipynb, .yaml or .yml")
    INVALID_SEQ = ("invalid_seq", 400, _U, "a seq is an integer between 0 and the notebook's head")
    READ_ONLY = ("read_only", 403, _R, "runt query only reads; change notebooks with events")
    SQL_ERROR = ("sql_error", 400, _U, "the projection's tables are listed in docs/architecture.md")
    QUERY_TIMEOUT = ("query_timeout", 408, _T, "narrow the query, or raise RUNTIMED_QUERY_TIMEOUT")
    QUERY_TOO_LARGE = ("query_too_large", 413, _R, "add a LIMIT, or raise RUNTIMED_QUERY_MAX_ROWS")
    STORE_ERROR = ("store_error", 500, _F, "see the daemon log")
    # -- event validation (catalog) ----------------------------------------------------------
    EVENT_REJECTED = ("event_rejected", 400, _F, "")
    INVALID_EVENT = ("invalid_event", 400, _U, "an event is a JSON object {id, name, v, args}")
    INVALID_EVENT_ID = ("invalid_event_id", 400, _U, "use a ULID or UUID")
    UNKNOWN_EVENT = ("unknown_event", 400, _U, "event names are listed in docs/architecture.md")
    UNSUPPORTED_VERSION = ("unsupported_version", 400, _U, "upgrade the client or the daemon")
    INVALID_ARGS = ("invalid_args", 400, _U, "")
    INVALID_ACTOR = ("invalid_actor", 400, _U, "an actor is {id, kind, name}")
    EVENT_TOO_LARGE = ("event_too_large", 413, _R, "large outputs belong in artifacts")
    BATCH_TOO_LARGE = ("batch_too_large", 413, _R, "split the push")
    ACTOR_MISMATCH = ("actor_mismatch", 403, _R, "events are attributed to the authenticated user")
    # -- event preconditions (materializer) --------------------------------------------------
    CELL_NOT_FOUND = ("cell_not_found", 404, _N, "list cell ids with `runt query ID 'select id from cells'`")
    CELL_EXISTS = ("cell_exists", 409, _F, "")
    TOO_MANY_CELLS = ("too_many_cells", 413, _R, "")
    SOURCE_TOO_LARGE = ("source_too_large", 413, _R, "")
    INVALID_UPDATE = ("invalid_update", 400, _U, "")
    WRONG_CELL = ("wrong_cell", 409, _F, "")
    NOT_EXECUTABLE = ("not_executable", 409, _F, "only code, ai and sql cells run")
    QUEUE_ID_EXISTS = ("queue_id_exists", 409, _F, "")
    EXECUTION_NOT_FOUND = ("execution_not_found", 404, _N, "")
    NOT_PENDING = ("not_pending", 409, _F, "")
    NOT_ASSIGNED = ("not_assigned", 409, _F, "")
    NOT_STARTED = ("not_started", 409, _F, "")
    NOT_RUNNING = ("not_running", 409, _F, "")
    TERMINAL_STATE = ("terminal_state", 409, _F, "")
    OUTPUT_EXISTS = ("output_exists", 409, _F, "")
    OUTPUT_NOT_FOUND = ("output_not_found", 404, _N, "")
    NOT_A_STREAM = ("not_a_stream", 409, _F, "")
    BAD_OFFSET = ("bad_offset", 400, _U, "")
    SESSION_EXISTS = ("session_exists", 409, _F, "")
    SESSION_NOT_FOUND = ("session_not_found", 404, _N, "")
    SESSION_INACTIVE = ("session_inactive", 409, _F, "")
    NOT_SESSION_OWNER = ("not_session_owner", 403, _R, "")
    RUNTIME_ACTIVE = ("runtime_active", 409, _F, "")
    NO_RUNTIME = ("no_runtime", 409, _F, "start one with `runt start ID`")
    NO_INPUT_PENDING = ("no_input_pending", 409, _F, "")
    APPROVAL_EXISTS = ("approval_exists", 409, _F, "")
    APPROVAL_NOT_FOUND = ("approval_not_found", 404, _N, "list them with `runt approvals ID`")
    APPROVAL_RESOLVED = ("approval_resolved", 409, _F, "")
    APPROVAL_SELF = ("approval_self", 403, _R, "a person must approve an agent's request")
    APPROVAL_DENIED = ("approval_denied", 403, _R, "a person denied the request; ask them, or change the plan")
    APPROVAL_TIMEOUT = ("approval_timeout", 408, _T, "nobody answered in time; `runt approvals ID` lists requests")
    COMM_NOT_FOUND = ("comm_not_found", 404, _N, "list the widgets with Session.widgets.list()")
    COMM_NOT_LIVE = ("comm_not_live", 409, _F, "run the widget's cell again: its kernel is gone, the state shown is the last one")
    # -- agent tools -------------------------------------------------------------------------
    STALE_REVISION = ("stale_revision", 409, _F, "the cell changed since you read it: read it again")
    INVALID_REGEX = ("invalid_regex", 400, _U, "check the pattern (Python `re` syntax)")
    NO_MATCH = ("no_match", 404, _N, "read the cell's current source first")
    # -- sync protocol (sent in an ``error`` message before a 44xx close) ----------------------
    BAD_MESSAGE = ("bad_message", 400, _U, "see the sync protocol in docs/architecture.md")
    BAD_HELLO = ("bad_hello", 400, _U, "")
    BAD_PUSH = ("bad_push", 400, _U, "")
    HELLO_REQUIRED = ("hello_required", 400, _U, "")
    HELLO_TIMEOUT = ("hello_timeout", 408, _T, "")
    DUPLICATE_HELLO = ("duplicate_hello", 400, _U, "")
    UNKNOWN_TYPE = ("unknown_type", 400, _U, "")
    MESSAGE_TOO_LARGE = ("message_too_large", 413, _R, "")
    SINCE_AHEAD = ("since_ahead", 409, _F, "discard the replica and resync from 0")
    SLOW_CONSUMER = ("slow_consumer", 408, _F, "reconnect with since=<last seq>")
    NOTEBOOK_DELETED = ("notebook_deleted", 410, _N, "")
    NOTEBOOK_CLOSED = ("notebook_closed", 503, _F, "retry: the next request opens the notebook again")
    OUTBOX_OVERFLOW = ("outbox_overflow", 429, _F, "read messages faster; reconnect with since=<last seq>")
    # -- runtimes and kernels ----------------------------------------------------------------
    RUNTIME_NOT_FOUND = ("runtime_not_found", 404, _N, "list them with `runt ps`")
    RUNTIMES_DISABLED = ("runtimes_disabled", 409, _R, "start the daemon without --no-runtimes")
    RUNTIME_FAILED = ("runtime_failed", 500, ExitCode.START_FAILED, "see `runt daemon logs`")
    RUNTIME_ENDED = ("runtime_ended", 409, ExitCode.KERNEL_DIED, "")
    RUNTIME_CONFLICT = ("runtime_conflict", 409, _F, "")
    UNKNOWN_KERNEL = ("unknown_kernel", 404, _N, "list kernels with `jupyter kernelspec list`")
    KERNEL_ERROR = ("kernel_error", 500, ExitCode.START_FAILED, "")
    KERNEL_START_TIMEOUT = ("kernel_start_timeout", 504, _T, "")
    RESTART_TIMEOUT = ("restart_timeout", 504, _T, "")
    BAD_CWD = ("bad_cwd", 400, _U, "set metadata runtimed.cwd to a directory on the daemon's machine")
    EXECUTION_TIMEOUT = ("execution_timeout", 504, _T, "pass a larger timeout")
    # -- environments (docs/environments.md) ------------------------------------------------------
    INVALID_DEPENDENCY = ("invalid_dependency", 400, _U, "dependencies are PEP 508 strings such as 'pandas>=2'")
    DEPENDENCIES_NOT_APPROVED = ("dependencies_not_approved", 403, _R,
                                 "approve them: `runt deps approve ID` (or `runt approvals ID`)")
    ENVIRONMENT_FAILED = ("environment_failed", 500, ExitCode.START_FAILED,
                          "fix the dependency list (`runt deps list ID`), or check the network")
    ENVIRONMENT_TIMEOUT = ("environment_timeout", 504, _T, "raise RUNTIMED_ENV_TIMEOUT or trim the dependencies")
    # -- formats, automation, artifacts ------------------------------------------------------
    INVALID_PARAMETERS = ("invalid_parameters", 400, _U, "")
    INVALID_CELL_POLICY = ("invalid_cell_policy", 400, _U, "see 'Retries, timeouts and conditions' in docs/cli.md")
    INVALID_EXPECTATIONS = ("invalid_expectations", 400, _U, "see 'Expectations' in docs/cli.md")
    ARTIFACT_NOT_FOUND = ("artifact_not_found", 404, _N, "")
    ARTIFACT_UNRESOLVED = ("artifact_unresolved", 409, _F, "")
    INVALID_ARTIFACT = ("invalid_artifact", 400, _U, "an artifact id is the sha256 of its bytes, 64 lowercase hex digits")
    ARTIFACT_MISMATCH = ("artifact_mismatch", 400, _R, "upload the exact bytes whose sha256 names the artifact")
    ARTIFACT_QUOTA = ("artifact_quota", 413, _R, "delete notebooks and run `runt gc --artifacts`, or raise the quota")
    LENGTH_REQUIRED = ("length_required", 411, _U, "send the upload with a Content-Length header")
    # -- runs and schedules (daemon jobs) -----------------------------------------------------
    RUN_NOT_FOUND = ("run_not_found", 404, _N, "list them with `runt runs`")
    RUNS_DISABLED = ("runs_disabled", 409, _R, "start the daemon with `runtimed` or `runt daemon start` (they run jobs)")
    RUN_NOT_RESUMABLE = ("run_not_resumable", 409, _R, "only a failed or cancelled run resumes; see `runt runs show ID`")
    KERNEL_GONE = ("kernel_gone", 409, ExitCode.KERNEL_DIED, "rerun from the start: `runt runs resume ID --from-start`")
    SCHEDULE_NOT_FOUND = ("schedule_not_found", 404, _N, "list them with `runt schedule list`")
    INVALID_SCHEDULE = ("invalid_schedule", 400, _U, "a cron line: 5 fields (minute hour day month weekday), "
                        "or 6 with seconds last")

    def __init__(self, code: str, http_status: int, exit_code: ExitCode, hint: str) -> None:
        self.code = code
        self.http_status = http_status
        self.exit_code = exit_code
        self.hint = hint

    @classmethod
    def lookup(cls, code: str) -> ErrorCode:
        """The registered code; an unknown one (e.g. from a newer daemon) is treated as a plain failure."""
        return _BY_CODE.get(code, cls.RUNTIMED_ERROR)

    @classmethod
    def known(cls, code: str) -> bool:
        return code in _BY_CODE


_BY_CODE: dict[str, ErrorCode] = {member.code: member for member in ErrorCode}


class RuntimedError(Exception):
    """Base class of every error raised by runtimed."""

    code = "runtimed_error"

    def __init__(self, message: str, *, code: str | ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code.code if isinstance(code, ErrorCode) else code

    @property
    def registered(self) -> ErrorCode:
        return ErrorCode.lookup(self.code)

    @property
    def http_status(self) -> int:
        return self.registered.http_status

    @property
    def exit_code(self) -> ExitCode:
        return self.registered.exit_code

    @property
    def hint(self) -> str:
        return self.registered.hint

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def from_dict(error: dict[str, str], status: int | None = None) -> RuntimedError:
    """An error body from the wire (REST or an ack) as the matching exception class."""
    code = str(error.get("code") or "runtimed_error")
    message = str(error.get("message") or code)
    registered = ErrorCode.lookup(code)
    status = status or registered.http_status
    cls: type[RuntimedError]
    if status == 401:
        cls = AuthError
    elif code == "cell_not_found":
        cls = CellNotFoundError
    elif status == 404:
        cls = NotFoundError
    elif code == "daemon_not_running":
        cls = DaemonNotRunningError
    else:
        cls = RuntimedError
    return cls(message, code=code)


class EventRejected(RuntimedError):
    """An event failed catalog validation or a precondition; nothing of it was stored."""

    code = "event_rejected"


class NotFoundError(RuntimedError):
    code = "not_found"


class InvalidNotebookError(RuntimedError):
    """A notebook file (ipynb, YAML) that cannot be read."""

    code = "invalid_notebook"


class DaemonNotRunningError(RuntimedError):
    code = "daemon_not_running"


class DaemonStartError(RuntimedError):
    code = "daemon_start_failed"


class AuthError(RuntimedError):
    code = "unauthorized"


class ConnectionLostError(RuntimedError):
    code = "connection_lost"


class DaemonTimeoutError(ConnectionLostError):
    """The daemon took longer than the request's bound to answer (it may still act on the request)."""

    code = "daemon_timeout"


class ExecutionTimeoutError(RuntimedError):
    code = "execution_timeout"


class KernelError(RuntimedError):
    code = "kernel_error"


class CellNotFoundError(NotFoundError):
    code = "cell_not_found"
