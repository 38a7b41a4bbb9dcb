"""Anthropic Messages API (``POST {base}/v1/messages``, ``x-api-key``, ``anthropic-version``).

Streams are SSE: ``message_start`` (model, input usage), ``content_block_start`` /
``content_block_delta`` (``text_delta``, ``input_json_delta``) / ``content_block_stop``,
``message_delta`` (stop_reason, cumulative output usage), ``message_stop``; ``ping`` is noise,
``error`` is mapped like the HTTP error of the same type.
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

__all__ = ["AnthropicProvider", "ANTHROPIC_VERSION"]

ANTHROPIC_VERSION = "2023-06-01"


def _int(v: Any) -> int:
    return v if isinstance(v, int) else 0


class AnthropicProvider(Provider):
    kind = "anthropic"

    def _headers(self, api_key: str | None) -> dict[str, str]:
        h = {"anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"}
        if api_key:
            h["x-api-key"] = api_key
        return h

    def _body(self, req: LlmRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": req.model,
            "max_tokens": req.max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in req.messages],
        }
        system = req.system
        if req.json_mode:
            # No native JSON mode: ask for it in the system prompt.
            system = (system + "\n\n" if system else "") + "Respond with a single JSON value only."
        if system:
            body["system"] = system
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.tools:
            body["tools"] = [msgspec.to_builtins(t) for t in req.tools]
        if stream:
            body["stream"] = True
        return body

    @property
    def url(self) -> str:
        return f"{self.profile.url}/v1/messages"

    async def complete(self, req: LlmRequest, api_key: str | None) -> Completion:
        data = await self.post_json(self.url, self._headers(api_key), self._body(req, False))
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise ParseError("missing field `content` in Anthropic response")
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in data["content"]:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                texts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_use":
                calls.append(ToolCall(id=str(block.get("id", "")), name=str(block.get("name", "")),
                                      input=block.get("input") or {}))
        raw_u = data.get("usage")
        u: dict[str, Any] = raw_u if isinstance(raw_u, dict) else {}
        return Completion(
            text="".join(texts),
            model=str(data.get("model") or req.model),
            stop_reason=data.get("stop_reason"),
            usage=Usage(input_tokens=_int(u.get("input_tokens")), output_tokens=_int(u.get("output_tokens"))),
            tool_calls=calls,
        )

    async def stream(
        self, req: LlmRequest, api_key: str | None, on_delta: DeltaCallback
    ) -> Completion:
        texts: list[str] = []
        st: dict[str, Any] = {"model": req.model, "stop": None, "in": 0, "out": 0}
        tools: dict[int, dict[str, Any]] = {}

        async def handle(ev: SseEvent) -> bool:
            kind = ev.event
            if kind == "ping":
                return False
            payload = decode_event_json(ev)
            if not isinstance(payload, dict):
                raise ParseError(f"expected a JSON object in {kind!r} event")
            if kind == "message":
                kind = str(payload.get("type", "message"))
            if kind == "error":
                raise error_from_stream_event(payload)
            if kind == "message_start":
                msg = payload.get("message") or {}
                st["model"] = str(msg.get("model") or st["model"])
                u = msg.get("usage") or {}
                st["in"] = _int(u.get("input_tokens"))
                st["out"] = _int(u.get("output_tokens"))
            elif kind == "content_block_start":
                block = payload.get("content_block") or {}
                if block.get("type") == "tool_use":
                    tools[_int(payload.get("index"))] = {
                        "id": block.get("id", ""), "name": block.get("name", ""), "json": []}
                elif block.get("type") == "text" and block.get("text"):
                    texts.append(block["text"])
                    await on_delta(block["text"])
            elif kind == "content_block_delta":
                delta = payload.get("delta") or {}
                if delta.get("type") == "text_delta":
                    text = str(delta.get("text", ""))
                    if text:
                        texts.append(text)
                        await on_delta(text)
                elif delta.get("type") == "input_json_delta":
                    t = tools.get(_int(payload.get("index")))
                    if t is not None:
                        t["json"].append(str(delta.get("partial_json", "")))
            elif kind == "message_delta":
                delta = payload.get("delta") or {}
                st["stop"] = delta.get("stop_reason") or st["stop"]
                u = payload.get("usage") or {}
                # Cumulative counts: the last message_delta wins.
                st["out"] = _int(u.get("output_tokens")) or st["out"]
                if u.get("input_tokens"):
                    st["in"] = _int(u.get("input_tokens"))
            elif kind == "message_stop":
                return True
            return False

        done = await self.stream_events(self.url, self._headers(api_key), self._body(req, True), handle)
        if not done:
            raise ParseError("stream ended before message_stop")
        calls = []
        for _, t in sorted(tools.items()):
            raw = "".join(t["json"]) or "{}"
            try:
                args = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                raise ParseError(f"malformed tool input JSON for {t['name']!r}") from None
            calls.append(ToolCall(id=str(t["id"]), name=str(t["name"]),
                                  input=args if isinstance(args, dict) else {}))
        return Completion(
            text="".join(texts),
            model=str(st["model"]),
            stop_reason=st["stop"],
            usage=Usage(input_tokens=st["in"], output_tokens=st["out"]),
            tool_calls=calls,
        )
