"""Anthropic Messages and Ollama ``/api/chat`` to and from the OpenAI chat shapes.

A backend of kind ``anthropic`` or ``ollama`` sits behind ``POST /v1/chat/completions`` like any
other: :func:`chat_request` turns the client's OpenAI body into the backend's (and names the
path), :func:`chat_response` turns its answer back into a ``chat.completion``, a
:class:`StreamTranslator` turns its stream (Anthropic's SSE events, Ollama's JSON lines) into
OpenAI ``chat.completion.chunk`` SSE frames as each piece arrives, and :func:`error_body`
turns its error body into OpenAI's ``{"error": {message, type, param, code}}``.

What is translated: system messages (Anthropic's top-level ``system``), text content (strings
or lists of text parts), consecutive same-role messages merged (Anthropic requires turns to
alternate), ``max_tokens``/``max_completion_tokens`` (Anthropic requires one: 4096 when the
client sent none; Ollama's ``num_predict``), ``temperature``, ``top_p``, ``stop``, ``seed``
(Ollama), ``user`` (Anthropic's ``metadata.user_id``), ``stream`` and
``stream_options.include_usage``; finish reasons and token usage back. Tool calls and images are
refused with an :class:`~workbench.errors.InputError` (400) naming the field, rather than sent
half-translated.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from workbench.errors import InputError

__all__ = ["StreamTranslator", "chat_request", "chat_response", "error_body"]

DEFAULT_ANTHROPIC_MAX_TOKENS = 4096
_ANTHROPIC_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}
_OLLAMA_STOP = {"stop": "stop", "length": "length"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def _text(content: Any, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InputError(
                    f"messages[{index}].content: part type {kind!r} cannot be sent to this "
                    "backend; send text parts only",
                    details={"field": f"messages[{index}].content"},
                )
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise InputError(
        f"messages[{index}].content must be a string or a list of text parts",
        details={"field": f"messages[{index}].content"},
    )


def _messages(body: dict[str, Any]) -> list[tuple[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError("messages must be a non-empty list", details={"field": "messages"})
    out = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("system", "developer", "user", "assistant"):
            raise InputError(
                f"messages[{i}].role={role!r} cannot be sent to this backend; use system, "
                "user or assistant",
                details={"field": f"messages[{i}].role"},
            )
        if m.get("tool_calls"):
            raise InputError(
                f"messages[{i}].tool_calls cannot be sent to this backend",
                details={"field": f"messages[{i}].tool_calls"},
            )
        out.append(("system" if role == "developer" else role, _text(m.get("content"), i)))
    return out


def _stops(body: dict[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    return [stop] if isinstance(stop, str) else [str(s) for s in stop]


def chat_request(kind: str, body: dict[str, Any], model: str) -> tuple[str, dict[str, Any]]:
    """The backend's path (relative to its base URL) and body for an OpenAI chat request.

    Args:
        kind: ``"anthropic"`` or ``"ollama"``.
        body: The client's ``/v1/chat/completions`` body.
        model: The model name the backend knows (aliases already resolved).

    Raises:
        InputError: a field the backend cannot take (naming it).
    """
    messages = _messages(body)
    stream = body.get("stream") is True
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if kind == "anthropic":
        system = "\n\n".join(text for role, text in messages if role == "system")
        turns: list[dict[str, Any]] = []
        for role, text in messages:
            if role == "system":
                continue
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"] += "\n\n" + text
            else:
                turns.append({"role": role, "content": text})
        out: dict[str, Any] = {
            "model": model,
            "messages": turns,
            "max_tokens": max_tokens
            if isinstance(max_tokens, int)
            else DEFAULT_ANTHROPIC_MAX_TOKENS,
            "stream": stream,
        }
        if system:
            out["system"] = system
        for key in ("temperature", "top_p"):
            if body.get(key) is not None:
                out[key] = body[key]
        stops = _stops(body)
        if stops:
            out["stop_sequences"] = stops
        if isinstance(body.get("user"), str):
            out["metadata"] = {"user_id": body["user"]}
        return "/messages", out
    if kind == "ollama":
        options: dict[str, Any] = {}
        for key in ("temperature", "top_p", "seed"):
            if body.get(key) is not None:
                options[key] = body[key]
        if isinstance(max_tokens, int):
            options["num_predict"] = max_tokens
        stops = _stops(body)
        if stops:
            options["stop"] = stops
        doc: dict[str, Any] = {
            "model": model,
            "messages": [{"role": role, "content": text} for role, text in messages],
            "stream": stream,
        }
        if options:
            doc["options"] = options
        return "/api/chat", doc
    raise ValueError(f"no translation for backend kind {kind!r}")


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def chat_response(kind: str, doc: dict[str, Any], model: str) -> dict[str, Any]:
    """A ``chat.completion`` for the backend's non-streamed answer.

    Raises:
        ValueError: ``doc`` is not the backend's answer shape (the proxy answers 502).
    """
    if kind == "anthropic":
        blocks = doc.get("content")
        if doc.get("type") != "message" or not isinstance(blocks, list):
            raise ValueError("not an Anthropic message")
        text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        usage = doc.get("usage") or {}
        finish = _ANTHROPIC_STOP.get(doc.get("stop_reason") or "end_turn", "stop")
        prompt, completion = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
        rid = str(doc.get("id") or uuid.uuid4().hex)
    elif kind == "ollama":
        message = doc.get("message")
        if not isinstance(message, dict):
            raise ValueError("not an Ollama chat answer")
        text = str(message.get("content", ""))
        finish = _OLLAMA_STOP.get(doc.get("done_reason") or "stop", "stop")
        prompt, completion = doc.get("prompt_eval_count", 0), doc.get("eval_count", 0)
        rid = uuid.uuid4().hex
    else:
        raise ValueError(f"no translation for backend kind {kind!r}")
    return {
        "id": f"chatcmpl-{rid}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
        ],
        "usage": _usage(int(prompt or 0), int(completion or 0)),
    }


def error_body(kind: str, status: int, raw: bytes) -> dict[str, Any]:
    """OpenAI's error body for a backend's error answer (any shape, garbage included)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    message = None
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            message = err["message"]
        elif isinstance(err, str):
            message = err
    if message is None:
        message = f"the {kind} backend answered HTTP {status}"
    kind_name = _ERROR_TYPES.get(status, "api_error")
    return {"error": {"message": message, "type": kind_name, "param": None, "code": None}}


class StreamTranslator:
    """Turns a backend's stream into OpenAI SSE frames, piece by piece.

    Feed it the bytes as they arrive (:meth:`feed` returns the frames complete so far, maybe
    none); it buffers only a partial event or line. :attr:`done` says whether the backend's
    end-of-stream marker arrived; :attr:`tokens` the usage it reported.

    Args:
        kind: ``"anthropic"`` (SSE events) or ``"ollama"`` (JSON lines).
        model: Model name put in each chunk.
        include_usage: Send a final usage chunk (``stream_options.include_usage``).
    """

    def __init__(self, kind: str, model: str, *, include_usage: bool = False) -> None:
        if kind not in ("anthropic", "ollama"):
            raise ValueError(f"no stream translation for backend kind {kind!r}")
        self.kind = kind
        self.model = model
        self.include_usage = include_usage
        self.done = False
        self.tokens = 0
        self._buf = b""
        self._base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self._prompt = 0
        self._completion = 0
        self._finish: str | None = None
        self._started = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return b"data: " + orjson.dumps({**self._base, "choices": [choice]}) + b"\n\n"

    def _content(self, text: str) -> bytes:
        if not self._started:
            self._started = True
            return self._chunk({"role": "assistant", "content": text})
        return self._chunk({"content": text})

    def _end(self) -> bytes:
        self.done = True
        self.tokens = self._prompt + self._completion
        out = self._chunk({}, self._finish or "stop")
        if self.include_usage:
            usage = {**self._base, "choices": [], "usage": _usage(self._prompt, self._completion)}
            out += b"data: " + orjson.dumps(usage) + b"\n\n"
        return out + b"data: [DONE]\n\n"

    def _error(self, message: str) -> bytes:
        self.done = True
        err = {"error": {"message": message, "type": "api_error", "param": None, "code": None}}
        return b"data: " + orjson.dumps(err) + b"\n\n"

    def feed(self, data: bytes) -> bytes:
        """Frames for everything complete in what arrived so far."""
        if self.done:
            return b""
        self._buf += data.replace(b"\r\n", b"\n")
        sep = b"\n\n" if self.kind == "anthropic" else b"\n"
        out = []
        while not self.done:
            cut = self._buf.find(sep)
            if cut < 0:
                break
            piece, self._buf = self._buf[:cut], self._buf[cut + len(sep) :]
            if piece.strip():
                out.append(
                    self._anthropic(piece) if self.kind == "anthropic" else self._ollama(piece)
                )
        return b"".join(out)

    def _anthropic(self, event: bytes) -> bytes:
        data = b"".join(
            line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")
        )
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self._error("the anthropic backend sent a malformed stream event")
        kind = doc.get("type")
        if kind == "message_start":
            usage = (doc.get("message") or {}).get("usage") or {}
            self._prompt = int(usage.get("input_tokens", 0) or 0)
            return self._content("")
        if kind == "content_block_delta":
            delta = doc.get("delta") or {}
            if delta.get("type") == "text_delta":
                return self._content(str(delta.get("text", "")))
            return b""
        if kind == "message_delta":
            reason = (doc.get("delta") or {}).get("stop_reason")
            self._finish = _ANTHROPIC_STOP.get(reason or "end_turn", "stop")
            self._completion = int((doc.get("usage") or {}).get("output_tokens", 0) or 0)
            return b""
        if kind == "message_stop":
            return self._end()
        if kind == "error":
            err = doc.get("error") or {}
            return self._error(str(err.get("message", "the anthropic backend failed")))
        return b""  # ping, content_block_start/stop

    def _ollama(self, line: bytes) -> bytes:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            return self._error("the ollama backend sent a malformed stream line")
        if not isinstance(doc, dict):
            return self._error("the ollama backend sent a malformed stream line")
        if "error" in doc:
            return self._error(str(doc["error"]))
        text = str((doc.get("message") or {}).get("content", ""))
        out = self._content(text) if text or not self._started else b""
        if doc.get("done"):
            self._prompt = int(doc.get("prompt_eval_count", 0) or 0)
            self._completion = int(doc.get("eval_count", 0) or 0)
            self._finish = _OLLAMA_STOP.get(doc.get("done_reason") or "stop", "stop")
            out += self._end()
        return out
