"""``workbench router <verb>``: run the LLM router, look at one, or run an emulated backend.

- ``serve --config router.toml [--host H] [--port N] [--workers K] [--insecure]``: the proxy
  (``/v1/*``, ``/health``, ``/metrics``); without client keys it binds loopback only unless
  ``--insecure``; SIGHUP reloads the config file without dropping requests in flight (a
  file that does not load is logged and the running config kept);
- ``status [--url URL] [--json]``: a running router's ``/health``: each backend's state,
  breaker, requests in flight, latency and error rate; exit status 1 when none is available;
- ``fake-backend [--port N] [--models M ...] [--latency-ms X] [--latency lognormal]
  [--error-rate P] [--rate-429 P] ...``: an emulated OpenAI/Ollama/Anthropic backend
  (:mod:`workbench.router.fake_backend`) in the foreground.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("router", help="the LLM router: serve, status, fake-backend")
    sub = p.add_subparsers(dest="router_verb")
    s = sub.add_parser("serve", help="run the routing proxy")
    s.add_argument("--config", required=True, help="router TOML file ([router], [[backends]])")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    s.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback bind without client keys"
    )
    s.set_defaults(func=_serve)
    st = sub.add_parser("status", help="a running router's backends")
    st.add_argument("--url", default="http://127.0.0.1:8080", help="the router's base URL")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.set_defaults(func=_status)
    f = sub.add_parser("fake-backend", help="an emulated LLM backend (OpenAI, Ollama, Anthropic)")
    f.add_argument("--host", default="127.0.0.1")
    f.add_argument("--port", type=int, default=8081)
    f.add_argument("--name", default="fake")
    f.add_argument("--models", nargs="+", default=["fake-model"])
    f.add_argument("--latency", choices=["fixed", "lognormal"], default="fixed")
    f.add_argument("--latency-ms", type=float, default=0.0, help="fixed value or median")
    f.add_argument("--latency-sigma", type=float, default=0.5, help="lognormal shape")
    f.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 500")
    f.add_argument("--rate-429", type=float, default=0.0, help="fraction answered 429")
    f.add_argument("--retry-after-s", type=float, default=1.0)
    f.add_argument("--stream-chunks", type=int, default=4)
    f.add_argument("--chunk-interval-ms", type=float, default=0.0)
    f.add_argument("--completion-tokens", type=int, default=8)
    f.add_argument("--quality", type=float, default=1.0, help="sent as x-fake-quality")
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=_fake_backend)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _serve(args: argparse.Namespace) -> int:
    from workbench.logging import configure_logging
    from workbench.router.config import load_config
    from workbench.router.server import serve

    config = load_config(args.config)
    configure_logging("INFO")
    serve(
        config,
        host=args.host,
        port=args.port,
        workers=args.workers,
        insecure=args.insecure,
        config_path=args.config,
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from workbench.errors import BackendUnavailable

    url = args.url.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 503: no backend available, the body still says why
        doc = json.loads(exc.read())
    except (urllib.error.URLError, OSError) as exc:
        raise BackendUnavailable(f"no router answers at {url} ({exc}); pass --url") from exc
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0 if doc.get("available") else 1
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"router {args.url}: {doc['status']}")
    for col in ("backend", "state", "breaker", "in flight", "ewma ms", "error rate", "requests"):
        table.add_column(col)
    for name, b in doc["backends"].items():
        table.add_row(
            name,
            b["state"],
            b["breaker"]["state"],
            str(b["outstanding"]),
            f"{1000 * b['ewma_latency_s']:.1f}",
            f"{b['error_rate']:.3f}",
            str(b["requests"]),
        )
    Console().print(table)
    return 0 if doc.get("available") else 1


def _fake_backend(args: argparse.Namespace) -> int:
    from aiohttp import web

    from workbench.router.fake_backend import FakeBackend

    backend = FakeBackend(
        name=args.name,
        models=tuple(args.models),
        latency=args.latency,
        latency_ms=args.latency_ms,
        latency_sigma=args.latency_sigma,
        error_rate=args.error_rate,
        rate_429=args.rate_429,
        retry_after_s=args.retry_after_s,
        stream_chunks=args.stream_chunks,
        chunk_interval_ms=args.chunk_interval_ms,
        completion_tokens=args.completion_tokens,
        quality=args.quality,
        seed=args.seed,
    )
    print(f"fake backend {args.name!r} on http://{args.host}:{args.port} (OpenAI base: /v1)")
    web.run_app(backend.app(), host=args.host, port=args.port, access_log=None, print=None)
    return 0
