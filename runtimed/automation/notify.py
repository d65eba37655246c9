"""``runt run --notify``: tell a webhook how a run ended, as JSON or as a Slack incoming-webhook message.

``--notify URL`` POSTs the run summary as JSON; ``--notify slack+https://hooks.slack.com/...``
POSTs a Slack message (status, failing cell, live URL). ``--notify-on`` picks success, failure
or both. Webhook URLs carry their secret in the path or query, so a URL is never printed whole:
messages show :func:`redact_url` instead.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

NotifyOn = Literal["always", "success", "failure"]
NOTIFY_ON: tuple[str, ...] = ("always", "success", "failure")
SLACK_PREFIX = "slack+"
TIMEOUT_S = 10.0


def redact_url(url: str) -> str:
    """``scheme://host/…``: enough to tell which endpoint failed, without its path, query or credentials."""
    try:
        parts = urlsplit(url.removeprefix(SLACK_PREFIX))
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        scheme = parts.scheme
    except ValueError:  # not even a URL: show nothing of it
        return "<invalid URL>"
    prefix = SLACK_PREFIX if url.startswith(SLACK_PREFIX) else ""
    return f"{prefix}{scheme}://{host}{port}/…"


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be a notification target (for a usage error before the run), or None."""
    import httpx

    try:
        parsed = httpx.URL(url.removeprefix(SLACK_PREFIX))
        problem = parsed.scheme not in ("http", "https") or not parsed.host
    except (httpx.InvalidURL, ValueError, TypeError):
        problem = True
    if problem:
        return (f"--notify {redact_url(url)}: expected an http(s) URL, or slack+https://hooks.slack.com/... "
                "for a Slack incoming webhook")
    return None


def wanted(on: str, success: bool) -> bool:
    return on == "always" or (on == "success") == success


def _succeeded(summary: Mapping[str, Any]) -> bool:
    if "exit_code" in summary:
        return summary["exit_code"] == 0
    return summary.get("status") == "success"


def slack_message(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook payload (``text`` plus ``blocks`` in mrkdwn) for one run or a batch."""
    ok = _succeeded(summary)
    icon = ":white_check_mark:" if ok else ":x:"
    if "runs" in summary:  # a batch or grid
        title = f"{icon} runt run: {summary.get('failed', 0)} of {summary.get('total', 0)} runs failed"
        lines = []
        for run in summary["runs"]:
            where = f" <{run['url']}|live notebook>" if run.get("url") else ""
            lines.append(f"• `{run.get('input_path')}` {run.get('status')}{where}"
                         + ("" if run.get("exit_code") == 0 else f": {run.get('message', '')}"))
        body = "\n".join(lines)
    else:
        title = f"{icon} runt run `{summary.get('input_path')}`: {summary.get('status')}"
        lines = []
        cell = summary.get("failed_cell")
        if cell:
            lines.append(f"*Failing cell:* {cell.get('index')} (id `{cell.get('id')}`): "
                         f"{cell.get('ename')}: {cell.get('evalue')}")
        elif not ok and summary.get("message"):
            lines.append(f"*Error:* {summary['message']}")
        if summary.get("failed_expectations"):
            lines.append("*Failed expectations:* " + "; ".join(
                str(e.get("message")) for e in summary["failed_expectations"]))
        if summary.get("url"):
            lines.append(f"*Live notebook:* <{summary['url']}>")
        if summary.get("duration_s") is not None:
            lines.append(f"*Duration:* {summary['duration_s']} s")
        body = "\n".join(lines)
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": title}}]
    if body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body}})
    return {"text": title + ("\n" + body if body else ""), "blocks": blocks}


def notify(url: str, summary: Mapping[str, Any], on: str = "always") -> bool | None:
    """POST ``summary`` to ``url`` if ``on`` says so; None when not sent, else whether it was delivered.

    A failure is reported on stderr (with the URL redacted), never raised: the run's result stands.
    """
    import httpx

    if not wanted(on, _succeeded(summary)):
        return None
    slack = url.startswith(SLACK_PREFIX)
    target = url.removeprefix(SLACK_PREFIX)
    payload = slack_message(summary) if slack else dict(summary)
    try:
        response = httpx.post(target, json=payload, timeout=TIMEOUT_S)
        if response.status_code >= 400:
            print(f"runt run: --notify {redact_url(url)} failed: HTTP {response.status_code}", file=sys.stderr)
            return False
        return True
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        detail = str(exc).replace(target, redact_url(url)) or type(exc).__name__
        print(f"runt run: --notify {redact_url(url)} failed: {type(exc).__name__}: {detail}", file=sys.stderr)
        return False
