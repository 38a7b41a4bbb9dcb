"""OpenAI Chat Completions format (``POST {base}/v1/chat/completions``, Bearer key): OpenAI,
OpenRouter (``anthropic/claude-...`` model names) and local servers (vLLM, Ollama, llama.cpp).

Streams are ``data: {chat.completion.chunk}`` lines ending with ``data: [DONE]``; usage arrives
in a final chunk because we ask for ``stream_options.include_usage``. An ``{"error": ...}``
chunk inside a 200 stream is mapped like the HTTP error.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tundra.intelligence.api import Usage
from tundra.intelligence.errors import ParseError
from tundra.intelligence.providers.base import (
    Completion,
    DeltaCallback,
    LlmRequest,
    Provider,
    ToolCall,
    decode_event_json,
    error_from_stream_event,
)
from tundra.intelligence.providers.sse import SseEvent

__all__ = ["OpenAICompatProvider"]


def _int(v: Any) -> int:
    return v if isinstance(v, int) else 0


def _usage(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    return Usage(input_tokens=_int(u.get("prompt_tokens")), output_tokens=_int(u.get("completion_tokens")))


class OpenAICompatProvider(Provider):
    @property
    def kind(self) -> str:
        return self.profile.provider

    def _headers(self, api_key: str | None) -> dict[str, str]:
        h = {"content-type": "application/json"}
        if api_key:
            h["authorization"] = f"Bearer {api_key}"
        if self.profile.provider == "openrouter":
            h["x-title"] = "tundra"
        return h

    def _body(self, req: LlmRequest, stream: bool) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if req.system:
            messages.append({"role": "system", "content": req.system})
        messages.extend({"role": m.role, "content": m.content} for m in req.messages)
        body: dict[str, Any] = {"model": req.model, "messages": messages, "max_tokens": req.max_tokens}
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.tools:
            body["tools"] = [
                {"type": "function", "function": {"name": t.name, "description": t.description,
                                                  "parameters": t.input_schema}}
                for t in req.tools
            ]
        if req.json_mode:
            body["response_format"] = {"type": "json_object"}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    @property
    def url(self) -> str:
        base = self.profile.url
        # Accept base URLs given with or without the /v1 suffix.
        return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"

    async def complete(self, req: LlmRequest, api_key: str | None) -> Completion:
        data = await self.post_json(self.url, self._headers(api_key), self._body(req, False))
        if not isinstance(data, dict):
            raise ParseError("expected a JSON object")
        if isinstance(data.get("error"), dict):
            raise error_from_stream_event(data)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ParseError("missing field `choices` in chat completion")
        msg = choices[0].get("message") or {}
        calls = []
        for tc in msg.get("tool_calls") or []:
            fn = tc.get("function") or {}
            try:
                args = msgspec.json.decode(fn.get("arguments") or "{}")
            except msgspec.DecodeError:
                raise ParseError("malformed tool call arguments") from None
            calls.append(ToolCall(id=str(tc.get("id", "")), name=str(fn.get("name", "")),
                                  input=args if isinstance(args, dict) else {}))
        return Completion(
            text=str(msg.get("content") or ""),
            model=str(data.get("model") or req.model),
            stop_reason=choices[0].get("finish_reason"),
            usage=_usage(data.get("usage")),
            tool_calls=calls,
        )

    async def stream(
        self, req: LlmRequest, api_key: str | None, on_delta: DeltaCallback
    ) -> Completion:
        texts: list[str] = []
        st: dict[str, Any] = {"model": req.model, "stop": None, "usage": Usage()}
        tools: dict[int, dict[str, Any]] = {}

        async def handle(ev: SseEvent) -> bool:
            if ev.data.strip() == "[DONE]":
                return True
            payload = decode_event_json(ev)
            if not isinstance(payload, dict):
                raise ParseError("expected a JSON object in chunk")
            if payload.get("error") is not None or ev.event == "error":
                raise error_from_stream_event(payload)
            st["model"] = str(payload.get("model") or st["model"])
            if payload.get("usage"):
                st["usage"] = _usage(payload["usage"])
            for choice in payload.get("choices") or []:
                delta = choice.get("delta") or {}
                text = delta.get("content")
                if text:
                    texts.append(text)
                    await on_delta(text)
                for tc in delta.get("tool_calls") or []:
                    slot = tools.setdefault(_int(tc.get("index")), {"id": "", "name": "", "args": []})
                    fn = tc.get("function") or {}
                    if tc.get("id"):
                        slot["id"] = tc["id"]
                    if fn.get("name"):
                        slot["name"] = fn["name"]
                    if fn.get("arguments"):
                        slot["args"].append(fn["arguments"])
                if choice.get("finish_reason"):
                    st["stop"] = choice["finish_reason"]
            return False

        done = await self.stream_events(self.url, self._headers(api_key), self._body(req, True), handle)
        # Some local servers end the body without [DONE]; a finish_reason is then enough.
        if not done and st["stop"] is None:
            raise ParseError("stream ended before [DONE]")
        calls = []
        for _, t in sorted(tools.items()):
            try:
                args = msgspec.json.decode("".join(t["args"]) or "{}")
            except msgspec.DecodeError:
                raise ParseError(f"malformed tool call arguments for {t['name']!r}") from None
            calls.append(ToolCall(id=str(t["id"]), name=str(t["name"]),
                                  input=args if isinstance(args, dict) else {}))
        return Completion(text="".join(texts), model=str(st["model"]), stop_reason=st["stop"],
                          usage=st["usage"], tool_calls=calls)
