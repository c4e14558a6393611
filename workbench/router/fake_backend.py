"""An emulated LLM backend speaking the OpenAI, Ollama and Anthropic wire shapes.

Tests, notebooks and benchmarks put it behind the router where a real model server would be:
it answers ``/v1/chat/completions`` (streaming and not), ``/v1/completions``,
``/v1/embeddings``, ``/v1/models``, Ollama's ``/api/chat`` and ``/api/tags``, and Anthropic's
``/v1/messages`` (with its streaming events), with what :class:`FakeKnobs` says: a latency
distribution (fixed or lognormal around a median), error and 429 rates (429s carry
``Retry-After``), streamed chunk count and spacing, token counts, a quality signal (the
``x-fake-quality`` header on every answer) and failure modes a real server shows (garbage
bodies, a connection closed mid-answer). Every answer carries ``x-fake-backend`` with its name,
so a test sees which backend served a request, and :class:`FakeStats` counts what arrived.

:func:`run_fake_backend` starts one in a background thread on a loopback port (for tests and
notebooks, sync or async); ``workbench router fake-backend --port N`` runs one in the
foreground. The content is deterministic: ``"<name> says"`` then filler words, one word a
completion token. Random draws (latency, errors) come from a seeded generator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from workbench.errors import InputError

__all__ = ["AppThread", "FakeBackend", "FakeKnobs", "FakeStats", "run_fake_backend"]

_JSON = "application/json"


@dataclass(frozen=True)
class FakeKnobs:
    """How an emulated backend behaves (change a running one with :meth:`FakeBackend.configure`).

    Attributes:
        name: Shown in ``x-fake-backend`` and in the content.
        models: Model names it serves; others get 404.
        latency: ``"fixed"`` or ``"lognormal"``.
        latency_ms: The fixed latency, or the lognormal's median, before the first byte.
        latency_sigma: Lognormal shape (standard deviation of the log).
        error_rate: Fraction of requests answered 500.
        rate_429: Fraction of requests answered 429 with ``Retry-After: retry_after_s``.
        retry_after_s: Seconds sent in ``Retry-After``.
        stream_chunks: Content chunks of a streamed answer.
        chunk_interval_ms: Pause between streamed chunks.
        completion_tokens: Tokens (words) in each answer.
        quality: Quality signal in [0, 1] sent as ``x-fake-quality``.
        fail_mode: ``None``; ``"garbage"`` (200 with a non-JSON body); ``"close"`` (the
            connection is dropped before any answer); ``"truncate"`` (a streamed answer
            stops after ``truncate_after`` frames, a whole one after half its promised body).
        truncate_after: Frames of a streamed answer sent before ``"truncate"`` drops the
            connection (the first frames are content chunks; later ones the usage and
            ``[DONE]``).
        api_key: When set, requests must carry it (``Authorization: Bearer`` or
            ``x-api-key``) or get 401.
        embedding_dims: Length of each embedding vector.
        seed: Seed of the latency and error draws.
    """

    name: str = "fake"
    models: tuple[str, ...] = ("fake-model",)
    latency: str = "fixed"
    latency_ms: float = 0.0
    latency_sigma: float = 0.5
    error_rate: float = 0.0
    rate_429: float = 0.0
    retry_after_s: float = 1.0
    stream_chunks: int = 4
    chunk_interval_ms: float = 0.0
    completion_tokens: int = 8
    quality: float = 1.0
    fail_mode: str | None = None
    truncate_after: int = 1
    api_key: str | None = field(default=None, repr=False)
    embedding_dims: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(key: str, valid: str) -> InputError:
            value = getattr(self, key)
            return InputError(
                f"fake backend: {key}={value!r} is invalid; expected {valid}",
                details={"field": key},
            )

        if isinstance(self.models, str) or not self.models:
            raise bad("models", "a non-empty tuple of model names")
        object.__setattr__(self, "models", tuple(self.models))
        if self.latency not in ("fixed", "lognormal"):
            raise bad("latency", "'fixed' or 'lognormal'")
        for key in ("latency_ms", "latency_sigma", "chunk_interval_ms", "retry_after_s"):
            if not getattr(self, key) >= 0:
                raise bad(key, "a number >= 0")
        for key in ("error_rate", "rate_429", "quality"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise bad(key, "a fraction in [0, 1]")
        if self.error_rate + self.rate_429 > 1.0:
            raise bad("error_rate", "error_rate + rate_429 <= 1")
        for key in ("stream_chunks", "completion_tokens", "embedding_dims", "truncate_after"):
            if getattr(self, key) < 1:
                raise bad(key, "an integer >= 1")
        if self.fail_mode not in (None, "garbage", "close", "truncate"):
            raise bad("fail_mode", "None, 'garbage', 'close' or 'truncate'")


@dataclass
class FakeStats:
    """What a fake backend received (read by tests).

    Attributes:
        requests: Requests per path.
        statuses: Answers per status code.
        aborted_streams: Streams whose client went away before the end.
        last_headers: Headers of the latest request (lower-case names).
        last_body: JSON body of the latest request.
    """

    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    aborted_streams: int = 0
    last_headers: dict[str, str] = field(default_factory=dict)
    last_body: Any = None

    @property
    def total(self) -> int:
        """Requests received on every path."""
        return sum(self.requests.values())


def _text_of(messages: Any) -> str:
    parts: list[str] = []
    for m in messages if isinstance(messages, list) else []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [c.get("text", "") for c in content if isinstance(c, dict)]
    return "\n".join(parts)


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


class FakeBackend:
    """The emulated backend's request handlers and state (one event loop)."""

    def __init__(self, knobs: FakeKnobs | None = None, **changes: Any) -> None:
        self.knobs = dataclasses.replace(knobs or FakeKnobs(), **changes)
        self.stats = FakeStats()
        self._rng = random.Random(self.knobs.seed)

    def configure(self, **changes: Any) -> None:
        """Change knobs of a running backend (validated; takes effect on the next request)."""
        self.knobs = dataclasses.replace(self.knobs, **changes)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        r = app.router
        r.add_post("/v1/chat/completions", self._chat)
        r.add_post("/v1/completions", self._completions)
        r.add_post("/v1/embeddings", self._embeddings)
        r.add_get("/v1/models", self._models)
        r.add_post("/api/chat", self._ollama_chat)
        r.add_get("/api/tags", self._ollama_tags)
        r.add_post("/v1/messages", self._anthropic)
        return app

    # -- shared steps ----------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"x-fake-backend": self.knobs.name, "x-fake-quality": f"{self.knobs.quality:g}"}

    def _json(self, status: int, doc: Any) -> web.Response:
        self.stats.statuses[status] += 1
        return web.Response(
            status=status, body=orjson.dumps(doc), content_type=_JSON, headers=self._headers()
        )

    def _latency_s(self) -> float:
        k = self.knobs
        if k.latency == "fixed":
            return k.latency_ms / 1000.0
        return k.latency_ms * math.exp(k.latency_sigma * self._rng.gauss(0.0, 1.0)) / 1000.0

    def _words(self) -> list[str]:
        k = self.knobs
        return [f"{k.name} says"] + ["lorem"] * (k.completion_tokens - 1)

    def _chunks(self) -> list[str]:
        words = self._words()
        n = min(self.knobs.stream_chunks, len(words))
        size = math.ceil(len(words) / n)
        out = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        return [c if i == 0 else " " + c for i, c in enumerate(out)]

    async def _admit(
        self, request: web.Request, style: str
    ) -> tuple[dict[str, Any] | None, web.StreamResponse | None]:
        """Count, parse, authenticate and draw the outcome; an answer means stop there."""
        k = self.knobs
        self.stats.requests[request.path] += 1
        self.stats.last_headers = {name.lower(): v for name, v in request.headers.items()}
        try:
            body = orjson.loads(await request.read()) if request.can_read_body else {}
        except orjson.JSONDecodeError:
            return None, self._error(style, 400, "invalid_request_error", "body is not JSON")
        self.stats.last_body = body
        if k.api_key is not None:
            auth = request.headers.get("Authorization", "")
            given = auth.removeprefix("Bearer ") if auth else request.headers.get("x-api-key")
            if given != k.api_key:
                return None, self._error(style, 401, "authentication_error", "invalid API key")
        model = body.get("model") if isinstance(body, dict) else None
        if request.method == "POST" and model not in k.models:
            message = f"model {model!r} not found; this backend serves {list(k.models)}"
            return None, self._error(style, 404, "not_found_error", message)
        await asyncio.sleep(self._latency_s())
        draw = self._rng.random()
        if draw < k.rate_429:
            resp = self._error(style, 429, "rate_limit_error", "rate limited, slow down")
            resp.headers["Retry-After"] = f"{k.retry_after_s:g}"
            return None, resp
        if draw < k.rate_429 + k.error_rate:
            return None, self._error(style, 500, "api_error", "the model server failed")
        if k.fail_mode == "garbage":
            self.stats.statuses[200] += 1
            return None, web.Response(
                status=200, text="<html>upstream garbage", content_type="text/html"
            )
        if k.fail_mode == "close":
            if request.transport is not None:
                request.transport.close()
            self.stats.statuses[0] += 1
            return None, web.Response(status=500)
        if k.fail_mode == "truncate" and not (isinstance(body, dict) and body.get("stream")):
            return None, await self._truncated(request)
        return body if isinstance(body, dict) else {}, None

    def _error(self, style: str, status: int, kind: str, message: str) -> web.Response:
        if style == "anthropic":
            return self._json(
                status, {"type": "error", "error": {"type": kind, "message": message}}
            )
        if style == "ollama":
            return self._json(status, {"error": message})
        return self._json(
            status, {"error": {"message": message, "type": kind, "param": None, "code": None}}
        )

    async def _truncated(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={**self._headers(), "Content-Type": _JSON})
        resp.content_length = 200
        await resp.prepare(request)
        await resp.write(b'{"id": "chatcmpl-cut", "object": "chat.completion", "cho')
        self.stats.statuses[200] += 1
        if request.transport is not None:
            request.transport.close()
        return resp

    async def _stream(
        self, request: web.Request, content_type: str, frames: list[bytes]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={**self._headers(), "Content-Type": content_type})
        await resp.prepare(request)
        self.stats.statuses[200] += 1
        pause = self.knobs.chunk_interval_ms / 1000.0
        try:
            for i, frame in enumerate(frames):
                if i and pause:
                    await asyncio.sleep(pause)
                await resp.write(frame)
                cut = i + 1 == self.knobs.truncate_after and self.knobs.fail_mode == "truncate"
                if cut and request.transport is not None:
                    request.transport.close()
                    return resp
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.stats.aborted_streams += 1
            raise
        return resp

    # -- OpenAI ----------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._admit(request, "openai")
        if answer is not None:
            return answer
        assert body is not None
        k = self.knobs
        prompt = _tokens(_text_of(body.get("messages")))
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": k.completion_tokens,
            "total_tokens": prompt + k.completion_tokens,
        }
        base = {"id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "created": int(time.time())}
        base["model"] = body["model"]
        if not body.get("stream"):
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(self._chunks())},
                "finish_reason": "stop",
            }
            return self._json(
                200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        frames = []
        chunks = self._chunks()
        for i, piece in enumerate(chunks):
            delta: dict[str, Any] = {"content": piece}
            if i == 0:
                delta["role"] = "assistant"
            last = i == len(chunks) - 1
            choice = {"index": 0, "delta": delta, "finish_reason": "stop" if last else None}
            frames.append({**base, "object": "chat.completion.chunk", "choices": [choice]})
        if (body.get("stream_options") or {}).get("include_usage"):
            frames.append(
                {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            )
        sse = [b"data: " + orjson.dumps(f) + b"\n\n" for f in frames] + [b"data: [DONE]\n\n"]
        return await self._stream(request, "text/event-stream", sse)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._admit(request, "openai")
        if answer is not None:
            return answer
        assert body is not None
        k = self.knobs
        prompt_text = body.get("prompt")
        prompt = _tokens(prompt_text if isinstance(prompt_text, str) else str(prompt_text))
        base: dict[str, Any] = {"id": f"cmpl-{uuid.uuid4().hex[:16]}", "object": "text_completion"}
        base.update(created=int(time.time()), model=body["model"])
        if body.get("stream"):
            chunks = self._chunks()
            frames = [
                {**base, "choices": [{"index": 0, "text": c, "finish_reason": None}]}
                for c in chunks
            ]
            sse = [b"data: " + orjson.dumps(f) + b"\n\n" for f in frames] + [b"data: [DONE]\n\n"]
            return await self._stream(request, "text/event-stream", sse)
        choice = {"index": 0, "text": "".join(self._chunks()), "finish_reason": "stop"}
        usage = {"prompt_tokens": prompt, "completion_tokens": k.completion_tokens}
        usage["total_tokens"] = prompt + k.completion_tokens
        return self._json(200, {**base, "choices": [choice], "usage": usage})

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._admit(request, "openai")
        if answer is not None:
            return answer
        assert body is not None
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        data = []
        for i, item in enumerate(items):
            digest = hashlib.sha256(str(item).encode()).digest()
            vec = [b / 255.0 for b in digest[: self.knobs.embedding_dims]]
            data.append({"object": "embedding", "index": i, "embedding": vec})
        tokens = sum(_tokens(str(x)) for x in items)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return self._json(
            200, {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        _, answer = await self._admit(request, "openai")
        if answer is not None:
            return answer
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": self.knobs.name}
            for m in self.knobs.models
        ]
        return self._json(200, {"object": "list", "data": data})

    # -- Ollama ----------------------------------------------------------------------------

    async def _ollama_chat(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._admit(request, "ollama")
        if answer is not None:
            return answer
        assert body is not None
        k = self.knobs
        prompt = _tokens(_text_of(body.get("messages")))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        base = {"model": body["model"], "created_at": stamp}
        final = {
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": prompt,
            "eval_count": k.completion_tokens,
            "total_duration": 1,
        }
        if body.get("stream", True) is False:
            message = {"role": "assistant", "content": "".join(self._chunks())}
            return self._json(200, {**base, "message": message, **final})
        lines = [
            {**base, "message": {"role": "assistant", "content": c}, "done": False}
            for c in self._chunks()
        ]
        lines.append({**base, "message": {"role": "assistant", "content": ""}, **final})
        frames = [orjson.dumps(line) + b"\n" for line in lines]
        return await self._stream(request, "application/x-ndjson", frames)

    async def _ollama_tags(self, request: web.Request) -> web.StreamResponse:
        _, answer = await self._admit(request, "ollama")
        if answer is not None:
            return answer
        models = [
            {"name": m, "model": m, "modified_at": "2026-01-01T00:00:00Z", "size": 1, "digest": m}
            for m in self.knobs.models
        ]
        return self._json(200, {"models": models})

    # -- Anthropic -------------------------------------------------------------------------

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._admit(request, "anthropic")
        if answer is not None:
            return answer
        assert body is not None
        if not isinstance(body.get("max_tokens"), int):
            return self._error("anthropic", 400, "invalid_request_error", "max_tokens: required")
        k = self.knobs
        text = _text_of(body.get("messages"))
        system = body.get("system")
        if isinstance(system, str):
            text = system + "\n" + text
        usage = {"input_tokens": _tokens(text), "output_tokens": k.completion_tokens}
        message = {
            "id": f"msg_{uuid.uuid4().hex[:20]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "stop_sequence": None,
        }
        if not body.get("stream"):
            content = [{"type": "text", "text": "".join(self._chunks())}]
            return self._json(
                200, {**message, "content": content, "stop_reason": "end_turn", "usage": usage}
            )
        start = {**message, "content": [], "stop_reason": None}
        start["usage"] = {"input_tokens": usage["input_tokens"], "output_tokens": 1}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            ("ping", {"type": "ping"}),
        ]
        for piece in self._chunks():
            delta = {"type": "text_delta", "text": piece}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": k.completion_tokens},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        frames = [
            f"event: {name}\ndata: ".encode() + orjson.dumps(d) + b"\n\n" for name, d in events
        ]
        return await self._stream(request, "text/event-stream", frames)


class AppThread:
    """An aiohttp application served on loopback from a background thread's event loop.

    Lets synchronous code (the ``openai`` SDK's sync client, a notebook) talk to an in-process
    server over real HTTP. Use as a context manager, or :meth:`start` / :meth:`stop`.

    Args:
        app: The application (built in the caller's thread; it runs in the server thread).
        host: Address to bind.
        port: Port to bind (0: a free one, see :attr:`port`).
        handler_cancellation: Cancel a handler when its client disconnects.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        handler_cancellation: bool = True,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._cancel = handler_cancellation
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> AppThread:
        """Bind and serve; returns once the port accepts connections."""
        self._thread = threading.Thread(target=self._run, name="app-thread", daemon=True)
        self._thread.start()
        if not self._ready.wait(30.0):
            raise TimeoutError(f"server on {self.host}:{self.port} did not start within 30 s")
        if self._failure is not None:
            raise self._failure
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            runner = web.AppRunner(self.app, handler_cancellation=self._cancel, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port)
            loop.run_until_complete(site.start())
            self._runner = runner
            self.port = int(runner.addresses[0][1])
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` in the server's loop and return its result (thread-safe)."""
        assert self._loop is not None
        done: list[Any] = []
        failed: list[BaseException] = []
        event = threading.Event()

        def go() -> None:
            try:
                done.append(fn(*args))
            except BaseException as exc:  # handed back to the calling thread
                failed.append(exc)
            finally:
                event.set()

        self._loop.call_soon_threadsafe(go)
        if not event.wait(10.0):
            raise TimeoutError("the server's event loop did not run the call within 10 s")
        if failed:
            raise failed[0]
        return done[0]

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30.0)

    def __enter__(self) -> AppThread:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeBackendServer(AppThread):
    """A :class:`FakeBackend` served from a background thread (see :func:`run_fake_backend`)."""

    def __init__(self, backend: FakeBackend, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(backend.app(), host=host, port=port)
        self.backend = backend

    @property
    def openai_url(self) -> str:
        """The OpenAI-compatible base URL (``.../v1``)."""
        return self.url + "/v1"

    @property
    def stats(self) -> FakeStats:
        """What it received."""
        return self.backend.stats

    def configure(self, **changes: Any) -> None:
        """Change its knobs (applied in its own loop, so between requests)."""
        self.call(lambda: self.backend.configure(**changes))

    def __enter__(self) -> FakeBackendServer:
        if self._thread is None:
            self.start()
        return self


def run_fake_backend(port: int = 0, *, host: str = "127.0.0.1", **knobs: Any) -> FakeBackendServer:
    """Start an emulated backend in a background thread (stop it with ``.stop()`` or ``with``).

    Args:
        port: Port to bind (0: a free one; read ``.port``).
        host: Address to bind.
        **knobs: :class:`FakeKnobs` fields.
    """
    server = FakeBackendServer(FakeBackend(**knobs), host=host, port=port)
    server.start()
    return server
