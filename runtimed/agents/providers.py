"""Model providers for AI cells, through their official SDKs: one streamed turn at a time.

A turn takes a neutral conversation (``Message`` dicts: ``system``/``user``/``assistant``/
``tool`` roles) and the tools' JSON schemas, streams the answer's text to ``on_text`` as it
arrives, and returns the text and the tool calls of the turn. Each provider translates
that to its wire format (OpenAI chat completions, Anthropic Messages). Failures become a
:class:`ProviderError` whose message never contains the API key: the SDK's own message
is scrubbed, since a provider may echo part of a bad key back.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

Message = dict[str, Any]
"""``{"role": "system"|"user", "content": str | list of {"type": "text", "text"} / {"type": "image", "mime_type",
"data"} parts}``, ``{"role": "assistant", "content": str, "tool_calls": [...]}``
or ``{"role": "tool", "tool_call_id": str, "name": str, "content": str}``."""
OnText = Callable[[str], Awaitable[None]]

REQUEST_TIMEOUT = 120.0
"""Seconds one provider request may take (the execution timeout bounds the whole cell)."""
MAX_TOKENS = 4096
_KEYLIKE = re.compile(r"\bsk-[-_A-Za-z0-9*.]{6,}")
"""OpenAI and Anthropic keys (``sk-…``, ``sk-proj-…``, ``sk-ant-…``), whole or masked, as providers echo them."""


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Turn:
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)


class ProviderError(Exception):
    """A provider failed; ``ename`` names the kind (shown as the AI cell's error name)."""

    def __init__(self, ename: str, message: str) -> None:
        super().__init__(message)
        self.ename = ename
        self.message = message


class Provider(Protocol):
    async def turn(self, messages: list[Message], tools: list[dict[str, Any]], on_text: OnText) -> Turn: ...

    async def close(self) -> None: ...


def scrub(text: str, secret: str | None) -> str:
    """Text with the secret and anything that looks like a key removed (provider messages echo keys)."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


def _arguments(raw: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        raise ProviderError("AiBadResponse", f"the model called {name!r} with arguments that are not JSON: "
                                             f"{raw[:200]!r}") from None
    if not isinstance(value, dict):
        raise ProviderError("AiBadResponse", f"the model called {name!r} with arguments that are not a JSON object")
    return value


def _failure(exc: Exception, sdk: Any, provider: str, base_url: str | None, key: str | None) -> ProviderError:
    """The SDK's exception as a clear, key-free ProviderError."""
    where = f"{provider} at {base_url or 'its default URL'}"
    detail = scrub(str(getattr(exc, "message", None) or exc), key)[:500]
    if isinstance(exc, sdk.APIConnectionError | sdk.APITimeoutError):
        return ProviderError("AiProviderUnreachable", f"cannot reach {where}: {detail}. Check the base URL and "
                                                      "that the server runs")
    if isinstance(exc, sdk.AuthenticationError | sdk.PermissionDeniedError):
        return ProviderError("AiAuthenticationError", f"{where} refused the API key ({detail}); set a valid key in "
                                                      "the daemon's environment")
    if isinstance(exc, sdk.RateLimitError):
        return ProviderError("AiRateLimited", f"{where} is rate limiting requests ({detail}); try again later")
    if isinstance(exc, sdk.APIStatusError):
        return ProviderError("AiProviderError", f"{where} answered HTTP {exc.status_code}: {detail}")
    return ProviderError("AiBadResponse", f"{where} sent a response that could not be read: "
                                          f"{type(exc).__name__}: {detail}")


class OpenAIProvider:
    """Any OpenAI-compatible chat-completions server (OpenAI, Ollama, vLLM, llama.cpp, LM Studio)."""

    def __init__(self, model: str, settings: dict[str, Any]) -> None:
        import openai

        self.model = model
        self.base_url = settings.get("base_url") or os.environ.get("OPENAI_BASE_URL") or None
        self.key = os.environ.get("OPENAI_API_KEY")
        self.temperature = settings.get("temperature")
        # local servers need no key, but the SDK insists on one
        self.client = openai.AsyncOpenAI(api_key=self.key or "no-key", base_url=self.base_url, max_retries=0,
                                         timeout=REQUEST_TIMEOUT)

    async def close(self) -> None:
        await self.client.close()

    async def turn(self, messages: list[Message], tools: list[dict[str, Any]], on_text: OnText) -> Turn:
        import openai

        wire: Any = [self._message(m) for m in messages]
        specs: Any = [{"type": "function", "function": {"name": t["name"], "description": t["description"],
                                                   "parameters": t["parameters"]}} for t in tools]
        extra: dict[str, Any] = {"temperature": self.temperature} if self.temperature is not None else {}
        if specs:
            extra["tools"] = specs
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        try:
            stream: Any = await self.client.chat.completions.create(model=self.model, messages=wire, stream=True,
                                                                    **extra)
            async for chunk in stream:
                for choice in chunk.choices or []:
                    delta = choice.delta
                    if delta is None:
                        continue
                    if delta.content:
                        text.append(delta.content)
                        await on_text(delta.content)
                    for call in delta.tool_calls or []:
                        slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                        slot["id"] = call.id or slot["id"]
                        if call.function is not None:
                            slot["name"] += call.function.name or ""
                            slot["arguments"] += call.function.arguments or ""
        except ProviderError:
            raise
        except Exception as exc:
            raise _failure(exc, openai, "the OpenAI-compatible provider", self.base_url, self.key) from None
        tool_calls = []
        for index in sorted(calls):
            slot = calls[index]
            if not slot["name"]:
                raise ProviderError("AiBadResponse", "the model sent a tool call without a function name")
            tool_calls.append(ToolCall(slot["id"] or f"call_{index}", slot["name"],
                                       _arguments(slot["arguments"], slot["name"])))
        return Turn("".join(text), tool_calls)

    @staticmethod
    def _message(m: Message) -> dict[str, Any]:
        if m["role"] == "assistant" and m.get("tool_calls"):
            return {"role": "assistant", "content": m.get("content") or None,
                    "tool_calls": [{"id": c.id, "type": "function",
                                    "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                                   for c in m["tool_calls"]]}
        if m["role"] == "tool":
            return {"role": "tool", "tool_call_id": m["tool_call_id"], "content": m["content"]}
        if isinstance(m["content"], list):
            return {"role": m["role"], "content": [
                {"type": "image_url", "image_url": {"url": f"data:{p['mime_type']};base64,{p['data']}"}}
                if p["type"] == "image" else p for p in m["content"]]}
        return {"role": m["role"], "content": m["content"]}


class AnthropicProvider:
    """The Anthropic Messages API (streaming, tool use)."""

    def __init__(self, model: str, settings: dict[str, Any]) -> None:
        import anthropic

        self.model = model
        self.base_url = settings.get("base_url") or os.environ.get("ANTHROPIC_BASE_URL") or None
        self.key = os.environ.get("ANTHROPIC_API_KEY")
        self.max_tokens = int(settings.get("max_tokens") or MAX_TOKENS)
        self.client = anthropic.AsyncAnthropic(api_key=self.key or "no-key", base_url=self.base_url, max_retries=0,
                                               timeout=REQUEST_TIMEOUT)

    async def close(self) -> None:
        await self.client.close()

    async def turn(self, messages: list[Message], tools: list[dict[str, Any]], on_text: OnText) -> Turn:
        import anthropic

        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        wire: Any = self._messages([m for m in messages if m["role"] != "system"])
        specs: Any = [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]} for t in tools]
        text: list[str] = []
        blocks: dict[int, dict[str, str]] = {}
        try:
            extra: dict[str, Any] = {"tools": specs} if specs else {}
            stream: Any = await self.client.messages.create(model=self.model, max_tokens=self.max_tokens,
                                                            system=system, messages=wire, stream=True, **extra)
            async for event in stream:
                if event.type == "content_block_start" and event.content_block.type == "tool_use":
                    blocks[event.index] = {"id": event.content_block.id, "name": event.content_block.name,
                                           "json": ""}
                elif event.type == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta":
                        text.append(delta.text)
                        await on_text(delta.text)
                    elif delta.type == "input_json_delta" and event.index in blocks:
                        blocks[event.index]["json"] += delta.partial_json
        except ProviderError:
            raise
        except Exception as exc:
            raise _failure(exc, anthropic, "the Anthropic provider", self.base_url, self.key) from None
        calls = [ToolCall(b["id"], b["name"], _arguments(b["json"], b["name"])) for _, b in sorted(blocks.items())]
        return Turn("".join(text), calls)

    @staticmethod
    def _messages(messages: list[Message]) -> list[dict[str, Any]]:
        """Anthropic wants tool results as user content blocks, consecutive ones in one message."""
        out: list[dict[str, Any]] = []
        for m in messages:
            if m["role"] == "assistant":
                content: list[dict[str, Any]] = [{"type": "text", "text": m["content"]}] if m.get("content") else []
                content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                            for c in m.get("tool_calls") or []]
                out.append({"role": "assistant", "content": content or [{"type": "text", "text": "(no answer)"}]})
            elif m["role"] == "tool":
                block = {"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": m["content"]}
                if out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list):
                    out[-1]["content"].append(block)
                else:
                    out.append({"role": "user", "content": [block]})
            elif isinstance(m["content"], list):
                out.append({"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": p["mime_type"], "data": p["data"]}}
                    if p["type"] == "image" else p for p in m["content"]]})
            else:
                out.append({"role": "user", "content": m["content"]})
        return out


PROVIDERS: dict[str, Callable[[str, dict[str, Any]], Provider]] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
}


def make_provider(name: str, model: str, settings: dict[str, Any]) -> Provider:
    factory = PROVIDERS.get(name)
    if factory is None:
        raise ProviderError("AiSettingsError", f"unknown AI provider {name!r}; use one of: {', '.join(PROVIDERS)}")
    if not model:
        raise ProviderError("AiSettingsError", "no model is set: set one with aiSettingsSet (provider and model)")
    return factory(model, settings)
