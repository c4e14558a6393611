"""The official ``openai`` SDK against the router, as a user's program drives it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.router.test_server import CHAT, backend_entry, fakes, router

KEY = {"ROUTER_KEY": "sk-client"}


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[str, list[Any]]]:
    with (
        fakes(
            {"models": ("m", "emb"), "completion_tokens": 5, "stream_chunks": 5},
            {"models": ("limited-m",), "rate_429": 1.0, "retry_after_s": 2},
            {"models": ("broken-m",), "error_rate": 1.0},
        ) as servers,
        router(
            [
                backend_entry(servers[0], "good", models=["m", "emb"], aliases=["nick"]),
                backend_entry(servers[1], "limited", models=["limited-m"]),
                backend_entry(servers[2], "broken", models=["broken-m"]),
            ],
            KEY,
            client_keys_env=["ROUTER_KEY"],
        ) as url,
    ):
        yield url + "/v1", servers


def client(base: str, key: str = "sk-client") -> openai.OpenAI:
    return openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=10)


def test_sync_chat_completion(setup: Any) -> None:
    base, _ = setup
    out = client(base).chat.completions.create(model="nick", messages=CHAT["messages"])
    assert out.choices[0].message.content == "f0 says lorem lorem lorem lorem"
    assert out.choices[0].finish_reason == "stop" and out.usage is not None
    assert out.usage.completion_tokens == 5


def test_sync_streaming(setup: Any) -> None:
    base, _ = setup
    stream = client(base).chat.completions.create(
        model="m", messages=CHAT["messages"], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "f0 says lorem lorem lorem lorem"
    assert sum(1 for c in chunks if c.choices) == 5
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_async_client_concurrently_and_streaming(setup: Any) -> None:
    base, _ = setup

    async def go() -> tuple[list[str], str]:
        c = openai.AsyncOpenAI(base_url=base, api_key="sk-client", max_retries=0, timeout=10)
        try:
            many = await asyncio.gather(
                *(c.chat.completions.create(model="m", messages=CHAT["messages"]) for _ in range(8))
            )
            stream = await c.chat.completions.create(
                model="m", messages=CHAT["messages"], stream=True
            )
            pieces = [ch.choices[0].delta.content or "" async for ch in stream if ch.choices]
            return [r.choices[0].message.content or "" for r in many], "".join(pieces)
        finally:
            await c.close()

    texts, streamed = asyncio.run(go())
    assert all(t.startswith("f0 says") for t in texts) and len(texts) == 8
    assert streamed == "f0 says lorem lorem lorem lorem"


def test_models_completions_embeddings(setup: Any) -> None:
    base, _ = setup
    c = client(base)
    ids = {m.id for m in c.models.list()}
    assert {"m", "nick", "emb", "limited-m", "broken-m"} <= ids
    assert c.completions.create(model="m", prompt="p").choices[0].text.startswith("f0 says")
    emb = c.embeddings.create(model="emb", input=["a", "b"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 8


def test_typed_errors(setup: Any) -> None:
    base, _ = setup
    with pytest.raises(openai.NotFoundError) as nf:
        client(base).chat.completions.create(model="ghost", messages=CHAT["messages"])
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        client(base, key="sk-wrong").chat.completions.create(model="m", messages=CHAT["messages"])
    with pytest.raises(openai.RateLimitError) as rl:
        client(base).chat.completions.create(model="limited-m", messages=CHAT["messages"])
    assert rl.value.response.headers["retry-after"] == "2"
    with pytest.raises(openai.APIStatusError) as se:
        client(base).chat.completions.create(model="broken-m", messages=CHAT["messages"])
    assert se.value.status_code == 502 and isinstance(se.value, openai.InternalServerError)
    with pytest.raises(openai.BadRequestError):
        client(base).chat.completions.create(model="", messages=CHAT["messages"])
