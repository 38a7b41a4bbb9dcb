"""The fake provider is faithful: the official anthropic and openai SDKs parse every reply
and error it produces exactly as they would the real services'."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.fakes.fake_llm import FakeLLM

MSG = [{"role": "user", "content": "Say hi"}]


_CLIENTS: list[anthropic.Anthropic | openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def _anthropic(fake: FakeLLM, **kw: Any) -> anthropic.Anthropic:
    c = anthropic.Anthropic(api_key="sk-ant-x", base_url=fake.url, **{"max_retries": 0, "timeout": 5, **kw})
    _CLIENTS.append(c)
    return c


def _openai(fake: FakeLLM) -> openai.OpenAI:
    c = openai.OpenAI(api_key="sk-x", base_url=fake.url + "/v1", max_retries=0, timeout=5)
    _CLIENTS.append(c)
    return c


def test_anthropic_sdk_message_and_stream(fake: FakeLLM) -> None:
    c = _anthropic(fake)
    fake.push({"text": "Hello there", "usage": {"input_tokens": 7, "output_tokens": 2}})
    m = c.messages.create(model="claude-sonnet-4-20250514", max_tokens=16, messages=MSG)  # type: ignore[arg-type]
    assert m.content[0].type == "text" and m.content[0].text == "Hello there"
    assert (m.usage.input_tokens, m.usage.output_tokens, m.stop_reason) == (7, 2, "end_turn")
    h = fake.requests[-1]["headers"]
    assert h.get("x-api-key") == "sk-ant-x" or h.get("authorization") == "Bearer sk-ant-x"
    fake.push({"text": "a b c", "usage": {"input_tokens": 5, "output_tokens": 3}})
    with c.messages.stream(model="claude-sonnet-4-20250514", max_tokens=16, messages=MSG) as s:  # type: ignore[arg-type]
        assert list(s.text_stream) == ["a", " b", " c"]
        final = s.get_final_message()
    assert (final.usage.input_tokens, final.usage.output_tokens) == (5, 3)


def test_anthropic_sdk_tool_use_stream(fake: FakeLLM) -> None:
    c = _anthropic(fake)
    fake.push({"tool_use": {"name": "Write", "input": {"file_path": "/tmp/x.txt", "content": "hi"}}})
    with c.messages.stream(model="m", max_tokens=16, messages=MSG) as s:  # type: ignore[arg-type]
        final = s.get_final_message()
    block = final.content[-1]
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("Write", {"file_path": "/tmp/x.txt", "content": "hi"})
    assert final.stop_reason == "tool_use"


@pytest.mark.parametrize(
    ("step", "exc", "status"),
    [
        ({"status": 429, "headers": {"retry-after": "3"}}, anthropic.RateLimitError, 429),
        ({"status": 401}, anthropic.AuthenticationError, 401),
        ({"status": 400}, anthropic.BadRequestError, 400),
        ({"status": 500}, anthropic.InternalServerError, 500),
        ({"status": 529}, anthropic.InternalServerError, 529),
    ],
)
def test_anthropic_sdk_error_classes(fake: FakeLLM, step: dict[str, object], exc: type[Exception], status: int) -> None:
    fake.push(step)
    with pytest.raises(exc) as ei:
        _anthropic(fake).messages.create(model="m", max_tokens=8, messages=MSG)  # type: ignore[arg-type]
    assert ei.value.status_code == status  # type: ignore[attr-defined]
    assert ei.value.body["type"] == "error"  # type: ignore[attr-defined]


def test_anthropic_sdk_sees_error_event_inside_200_stream(fake: FakeLLM) -> None:
    fake.push({"fault": "error_event", "after": 1, "error": {"type": "overloaded_error", "message": "Overloaded"}})
    with pytest.raises(anthropic.APIStatusError) as ei:
        with _anthropic(fake).messages.stream(model="m", max_tokens=8, messages=MSG) as s:  # type: ignore[arg-type]
            list(s.text_stream)
    assert "Overloaded" in str(ei.value)


def test_anthropic_sdk_retries_honour_retry_after_ms(fake: FakeLLM) -> None:
    fake.push({"status": 529, "headers": {"retry-after-ms": "10"}}, {"text": "recovered"})
    c = _anthropic(fake, max_retries=1)
    m = c.messages.create(model="m", max_tokens=8, messages=MSG)  # type: ignore[arg-type]
    assert m.content[0].text == "recovered"  # type: ignore[union-attr]
    assert len(fake.requests) == 2


def test_openai_sdk_completion_stream_and_usage(fake: FakeLLM) -> None:
    c = _openai(fake)
    fake.push({"text": "Hi you", "usage": {"input_tokens": 9, "output_tokens": 2}})
    r = c.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "Hi you"
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (9, 2)
    fake.push({"text": "x y", "usage": {"input_tokens": 4, "output_tokens": 2}})
    parts: list[str] = []
    usage = None
    for chunk in c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,  # type: ignore[arg-type]
                                           stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert parts == ["x", " y"]
    assert usage is not None and usage.total_tokens == 6


def test_openai_sdk_tool_calls(fake: FakeLLM) -> None:
    fake.push({"tool_use": {"name": "Write", "input": {"path": "a"}}})
    r = _openai(fake).chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "Write" and call.function.arguments == '{"path": "a"}'  # type: ignore[union-attr]
    assert r.choices[0].finish_reason == "tool_calls"


def test_openai_sdk_quota_and_rate_limit_errors(fake: FakeLLM) -> None:
    fake.push({"status": 429, "error": {"type": "insufficient_quota", "code": "insufficient_quota",
                                        "message": "You exceeded your current quota"}})
    with pytest.raises(openai.RateLimitError) as ei:
        _openai(fake).chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    assert ei.value.code == "insufficient_quota"
    fake.push({"status": 503})
    with pytest.raises(openai.InternalServerError):
        _openai(fake).chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]


def test_openai_sdk_rejects_error_chunk_in_stream(fake: FakeLLM) -> None:
    fake.push({"fault": "error_event", "after": 1, "error": {"code": 502, "message": "upstream died"}})
    with pytest.raises(openai.APIError) as ei:
        for _ in _openai(fake).chat.completions.create(model="gpt-4o", messages=MSG, stream=True):  # type: ignore[arg-type]
            pass
    assert "upstream died" in str(ei.value)


def test_standalone_script_file(tmp_path: object) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(str(tmp_path)) / "s.json"
    script.write_text(json.dumps({"default": {"text": "default reply"},
                                  "steps": [{"match": {"has_tool_result": False}, "tool_use": {"name": "Write", "input": {"file_path": "f", "content": "c"}}},
                                            {"match": {"has_tool_result": True}, "text": "done"}]}))
    proc = subprocess.Popen([sys.executable, "tests/fakes/fake_llm.py", "--port", "0", "--script", str(script)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        c = anthropic.Anthropic(api_key="k", base_url=url, max_retries=0, timeout=5)
        _CLIENTS.append(c)
        first = c.messages.create(model="m", max_tokens=8, messages=MSG)  # type: ignore[arg-type]
        assert first.content[0].type == "tool_use"
        tool_id = first.content[0].id
        second = c.messages.create(model="m", max_tokens=8, messages=[  # type: ignore[arg-type]
            *MSG, {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "ok"}]}])
        assert second.content[0].text == "done"  # type: ignore[union-attr]
        third = c.messages.create(model="m", max_tokens=8, messages=MSG)  # type: ignore[arg-type]
        assert third.content[0].text == "default reply"  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(5)
        if proc.stdout:
            proc.stdout.close()
