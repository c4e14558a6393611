"""Anthropic Messages and Ollama /api/chat behind /v1/chat/completions."""

from __future__ import annotations

import json

import httpx
import openai
import orjson
import pytest

from tests.router.test_server import CHAT, fakes, router
from workbench.errors import InputError
from workbench.router.translate import StreamTranslator, chat_request, chat_response, error_body

MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "one"},
    {"role": "user", "content": [{"type": "text", "text": "two"}]},
    {"role": "assistant", "content": "ok"},
    {"role": "user", "content": "three"},
]


def test_anthropic_request_splits_system_and_merges_turns() -> None:
    body = {"messages": MESSAGES, "max_tokens": 99, "temperature": 0.2, "stop": "END", "user": "u"}
    path, out = chat_request("anthropic", body, "claude-x")
    assert path == "/messages" and out["model"] == "claude-x" and out["system"] == "be brief"
    assert out["messages"] == [
        {"role": "user", "content": "one\n\ntwo"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "three"},
    ]
    assert out["max_tokens"] == 99 and out["stop_sequences"] == ["END"]
    assert out["temperature"] == 0.2 and out["metadata"] == {"user_id": "u"}
    assert chat_request("anthropic", {"messages": MESSAGES[1:2]}, "c")[1]["max_tokens"] == 4096


def test_ollama_request_maps_options() -> None:
    body = {"messages": MESSAGES, "max_tokens": 7, "seed": 3, "stream": True}
    path, out = chat_request("ollama", body, "llama3")
    assert path == "/api/chat" and out["stream"] is True
    assert out["options"] == {"seed": 3, "num_predict": 7}
    assert [m["role"] for m in out["messages"]] == ["system", "user", "user", "assistant", "user"]


def test_untranslatable_content_is_refused_by_name() -> None:
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    with pytest.raises(InputError, match=r"messages\[0\]\.content"):
        chat_request("anthropic", {"messages": image}, "c")
    with pytest.raises(InputError, match="role"):
        chat_request("ollama", {"messages": [{"role": "tool", "content": "x"}]}, "c")


def test_responses_and_errors_come_back_in_openai_shapes() -> None:
    doc = {
        "type": "message",
        "id": "msg_1",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
    out = chat_response("anthropic", doc, "nick")
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
    assert out["choices"][0]["finish_reason"] == "length" and out["model"] == "nick"
    assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    with pytest.raises(ValueError):
        chat_response("anthropic", {"nope": 1}, "m")
    err = error_body("anthropic", 400, b'{"type":"error","error":{"type":"x","message":"bad"}}')
    assert err["error"]["message"] == "bad" and err["error"]["type"] == "invalid_request_error"
    assert error_body("ollama", 404, b'{"error":"no model"}')["error"]["message"] == "no model"
    assert "HTTP 500" in error_body("ollama", 500, b"<html>")["error"]["message"]


def test_stream_translator_handles_pieces_split_anywhere() -> None:
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 2}}},
        {"type": "ping"},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "lo"}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 5},
        },
        {"type": "message_stop"},
    ]
    raw = b"".join(
        b"event: " + e["type"].encode() + b"\r\ndata: " + orjson.dumps(e) + b"\r\n\r\n"
        for e in events
    )
    t = StreamTranslator("anthropic", "m", include_usage=True)
    out = b"".join(t.feed(raw[i : i + 7]) for i in range(0, len(raw), 7))
    frames = [f[6:] for f in out.decode().split("\n\n") if f]
    assert frames[-1] == "[DONE]" and t.done and t.tokens == 7
    chunks = [json.loads(f) for f in frames[:-1]]
    assert (
        "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        == "Hello"
    )
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] == 7
    bad = StreamTranslator("ollama", "m")
    assert b'"error"' in bad.feed(b"{not json\n") and bad.done


@pytest.mark.parametrize("kind", ["anthropic", "ollama"])
def test_backend_kind_behind_chat_completions(kind: str) -> None:
    with fakes({"models": ("native-m",), "completion_tokens": 4, "stream_chunks": 2}) as (f,):
        url = f.url + "/v1" if kind == "anthropic" else f.url
        entry = {"name": "n", "kind": kind, "url": url, "models": ["native-m"], "aliases": ["m"]}
        with router([entry]) as base:
            c = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=10)
            out = c.chat.completions.create(model="m", messages=MESSAGES)
            assert out.choices[0].message.content == "f0 says lorem lorem lorem"
            assert out.usage is not None and out.usage.completion_tokens == 4
            path = "/v1/messages" if kind == "anthropic" else "/api/chat"
            assert f.stats.requests[path] == 1 and f.stats.last_body["model"] == "native-m"
            stream = c.chat.completions.create(
                model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            chunks = list(stream)
            text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            assert text == "f0 says lorem lorem lorem"
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
            f.configure(rate_429=1.0)
            with pytest.raises(openai.RateLimitError):
                c.chat.completions.create(model="m", messages=MESSAGES)
            f.configure(rate_429=0.0)
            r = httpx.post(base + "/v1/chat/completions", json={**CHAT, "model": "ghost"})
            assert r.status_code == 404
            image = [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]
            with pytest.raises(openai.BadRequestError):
                c.chat.completions.create(model="m", messages=image)  # type: ignore[arg-type]
