"""The emulated backend, over real loopback HTTP, in each wire shape it speaks."""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from workbench.errors import InputError
from workbench.router.fake_backend import FakeBackend, FakeKnobs, run_fake_backend


@pytest.fixture
def fake() -> Iterator[Any]:
    with run_fake_backend(name="fb", models=("m1", "m2"), completion_tokens=6) as server:
        yield server


def _post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    async def go() -> tuple[int, Any, Any]:
        async with aiohttp.ClientSession() as s, s.post(url, json=body, headers=headers) as r:
            raw = await r.read()
            return r.status, r.headers, raw

    return asyncio.run(go())


def _sse(raw: bytes) -> list[Any]:
    out = []
    for block in raw.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_openai_chat_non_streaming(fake: Any) -> None:
    body = {"model": "m1", "messages": [{"role": "user", "content": "x" * 40}]}
    status, headers, raw = _post(fake.openai_url + "/chat/completions", body)
    doc = json.loads(raw)
    assert status == 200 and headers["x-fake-backend"] == "fb"
    assert headers["x-fake-quality"] == "1"
    assert doc["object"] == "chat.completion" and doc["model"] == "m1"
    assert doc["choices"][0]["message"]["content"] == "fb says lorem lorem lorem lorem lorem"
    assert doc["usage"] == {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16}
    assert fake.stats.requests["/v1/chat/completions"] == 1


def test_openai_chat_streaming_chunks_and_usage(fake: Any) -> None:
    fake.configure(stream_chunks=3)
    body = {
        "model": "m2",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    status, headers, raw = _post(fake.openai_url + "/chat/completions", body)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = _sse(raw)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if e["choices"]]
    assert len(chunks) == 3
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == (
        "fb says lorem lorem lorem lorem lorem"
    )
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["usage"]["completion_tokens"] == 6


def test_completions_embeddings_models(fake: Any) -> None:
    status, _, raw = _post(fake.openai_url + "/completions", {"model": "m1", "prompt": "abcd"})
    doc = json.loads(raw)
    assert status == 200 and doc["object"] == "text_completion"
    assert doc["choices"][0]["text"].startswith("fb says")
    status, _, raw = _post(fake.openai_url + "/embeddings", {"model": "m1", "input": ["a", "b"]})
    doc = json.loads(raw)
    assert status == 200 and len(doc["data"]) == 2 and len(doc["data"][0]["embedding"]) == 8
    assert doc["data"][0]["embedding"] != doc["data"][1]["embedding"]

    async def models() -> Any:
        async with aiohttp.ClientSession() as s, s.get(fake.openai_url + "/models") as r:
            return await r.json()

    assert [m["id"] for m in asyncio.run(models())["data"]] == ["m1", "m2"]


def test_unknown_model_and_bad_key_get_openai_errors() -> None:
    with run_fake_backend(models=("m",), api_key="sk-k") as fake:
        url = fake.openai_url + "/chat/completions"
        status, _, raw = _post(url, {"model": "m", "messages": []})
        assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error"
        auth = {"Authorization": "Bearer sk-k"}
        status, _, raw = _post(url, {"model": "zzz", "messages": []}, auth)
        assert status == 404 and "zzz" in json.loads(raw)["error"]["message"]
        assert _post(url, {"model": "m", "messages": []}, auth)[0] == 200


def test_error_and_429_rates_follow_the_knobs() -> None:
    """400 draws at 20 % errors and 30 % 429s: each count is Binomial(400, p); the bounds
    are about 4.4 standard deviations wide (false failure < 1e-4 per bound), and a backend
    ignoring the knob (0 errors) fails them for sure."""
    with run_fake_backend(models=("m",), error_rate=0.2, rate_429=0.3, retry_after_s=7) as fake:
        url = fake.openai_url + "/chat/completions"

        async def go() -> list[tuple[int, str | None]]:
            async with aiohttp.ClientSession() as s:
                out = []
                for _ in range(400):
                    async with s.post(url, json={"model": "m", "messages": []}) as r:
                        await r.read()
                        out.append((r.status, r.headers.get("Retry-After")))
                return out

        results = asyncio.run(go())
    statuses = [s for s, _ in results]
    for code, p in ((500, 0.2), (429, 0.3)):
        n = statuses.count(code)
        assert abs(n - 400 * p) <= 4.4 * math.sqrt(400 * p * (1 - p)), (code, n)
    assert {ra for s, ra in results if s == 429} == {"7"}


def test_lognormal_latency_has_the_configured_median() -> None:
    """200 draws with median 20 ms and sigma 0.3: the sample median of a lognormal has a
    log-scale standard error of about 1.25*0.3/sqrt(200) = 0.027, so [15, 27] ms (log
    distance >= 0.26, over 9 standard errors, plus loop overhead on the high side) fails
    with probability far below 1e-4; a fixed 0 ms latency fails it."""
    backend = FakeBackend(models=("m",), latency="lognormal", latency_ms=20.0, latency_sigma=0.3)
    draws = [backend._latency_s() for _ in range(200)]
    assert 0.015 <= statistics.median(draws) <= 0.027
    with run_fake_backend(models=("m",), latency_ms=60.0) as fake:
        t0 = time.perf_counter()
        _post(fake.openai_url + "/chat/completions", {"model": "m", "messages": []})
        assert time.perf_counter() - t0 >= 0.06


def test_ollama_shapes(fake: Any) -> None:
    fake.configure(stream_chunks=2)
    base = fake.url
    body = {"model": "m1", "messages": [{"role": "user", "content": "hey"}], "stream": False}
    status, _, raw = _post(base + "/api/chat", body)
    doc = json.loads(raw)
    assert status == 200 and doc["done"] is True and doc["eval_count"] == 6
    assert doc["message"]["content"].startswith("fb says")
    status, headers, raw = _post(base + "/api/chat", {**body, "stream": True})
    lines = [json.loads(x) for x in raw.decode().splitlines()]
    assert headers["Content-Type"].startswith("application/x-ndjson")
    assert [x["done"] for x in lines] == [False, False, True]
    assert "".join(x["message"]["content"] for x in lines).startswith("fb says lorem")

    async def tags() -> Any:
        async with aiohttp.ClientSession() as s, s.get(base + "/api/tags") as r:
            return await r.json()

    assert [m["name"] for m in asyncio.run(tags())["models"]] == ["m1", "m2"]


def test_anthropic_shapes(fake: Any) -> None:
    url = fake.url + "/v1/messages"
    body = {"model": "m1", "max_tokens": 50, "messages": [{"role": "user", "content": "q"}]}
    status, _, raw = _post(url, body)
    doc = json.loads(raw)
    assert status == 200 and doc["type"] == "message" and doc["stop_reason"] == "end_turn"
    assert doc["content"][0]["text"].startswith("fb says")
    assert doc["usage"]["output_tokens"] == 6
    status, _, raw = _post(url, {"model": "m1", "messages": []})
    assert status == 400 and json.loads(raw)["type"] == "error"
    status, _, raw = _post(url, {**body, "stream": True})
    names = [b.split("\n")[0] for b in raw.decode().strip().split("\n\n")]
    assert names[0] == "event: message_start" and names[-1] == "event: message_stop"
    assert "event: content_block_delta" in names and "event: message_delta" in names


def test_garbage_and_closed_connections() -> None:
    with run_fake_backend(models=("m",), fail_mode="garbage") as fake:
        status, _, raw = _post(fake.openai_url + "/chat/completions", {"model": "m"})
        assert status == 200 and raw.startswith(b"<html>")
        for mode in ("close", "truncate"):
            fake.configure(fail_mode=mode)
            with pytest.raises(aiohttp.ClientError):
                _post(fake.openai_url + "/chat/completions", {"model": "m"})
            with pytest.raises(aiohttp.ClientError):
                _post(fake.openai_url + "/chat/completions", {"model": "m", "stream": True})


def test_knobs_are_validated() -> None:
    with run_fake_backend() as fake, pytest.raises(InputError, match="quality"):
        fake.configure(quality=2.0)  # refused in the server's loop, raised here
    with pytest.raises(InputError, match="error_rate"):
        FakeKnobs(error_rate=1.5)
    with pytest.raises(InputError, match="latency"):
        FakeKnobs(latency="uniform")
    with pytest.raises(InputError, match="fail_mode"):
        FakeKnobs(fail_mode="explode")


def test_truncate_after_sends_that_many_frames_then_drops_the_connection() -> None:
    """A streamed answer cut after k frames: the client reads k whole SSE frames of one
    answer (no ``[DONE]``), then the connection breaks."""

    async def read_until_broken(url: str) -> tuple[bytes, bool]:
        body = {"model": "m", "stream": True}
        got, broken = b"", False
        async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
            try:
                async for data in r.content.iter_any():
                    got += data
            except aiohttp.ClientError:
                broken = True
        return got, broken

    with run_fake_backend(
        models=("m",), fail_mode="truncate", truncate_after=3, stream_chunks=6
    ) as fake:
        raw, broken = asyncio.run(read_until_broken(fake.openai_url + "/chat/completions"))
        frames = _sse(raw)
        assert broken and len(frames) == 3 and "[DONE]" not in frames
        assert len({f["id"] for f in frames}) == 1
        assert frames[0]["choices"][0]["delta"]["content"].startswith("fake says")
    with pytest.raises(InputError, match="truncate_after"):
        FakeKnobs(truncate_after=0)
