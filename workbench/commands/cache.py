"""``workbench cache <verb>``: look at and manage the cache's namespaces in Redis.

- ``stats [--service S] [--json]``: what Redis holds for the cache (keys per namespace,
  counted with SCAN), the server's memory, clients and uptime, and the round-trip time;
- ``warm FILE --service S [--ttl N]``: store every item of a manifest, a JSON object of
  key -> value, or (``.jsonl``) JSON Lines of ``{"key": ..., "value": ...}`` (``"ttl"``
  optional per line), with :func:`workbench.cache.warming.warm` and its progress bar; items
  it cannot store are listed and make the exit status 1, the others are stored;
- ``flush-namespace --service S --yes``: delete every key of one namespace (refused without
  ``--yes``).

The Redis and the knobs are those of the settings (``[cache]``, ``WORKBENCH_CACHE__*``,
``WORKBENCH_REDIS_URL``), so the command sees what ``workbench serve`` stores. Redis out is
an error here (exit 2), not a fallback: what a CLI run put in memory would end with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("cache", help="the cache's namespaces in Redis: stats, warm, flush")
    sub = p.add_subparsers(dest="cache_verb")
    s = sub.add_parser("stats", help="keys per namespace, Redis memory, clients and latency")
    s.add_argument("--service", default=None, help="only this namespace (default: all)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=_stats)
    w = sub.add_parser("warm", help="store the items of a JSON or JSON Lines manifest")
    w.add_argument("file", help="a JSON object of key -> value, or JSON Lines {key, value[, ttl]}")
    w.add_argument("--service", required=True, help="the namespace to fill")
    w.add_argument(
        "--ttl", type=float, default=None, help="seconds (default: [cache] default_ttl_s)"
    )
    w.set_defaults(func=_warm)
    f = sub.add_parser("flush-namespace", help="delete every key of one namespace")
    f.add_argument("--service", required=True, help="the namespace to empty")
    f.add_argument("--yes", action="store_true", help="really delete (required)")
    f.set_defaults(func=_flush)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _service() -> Any:
    from dataclasses import replace

    from workbench.cache.service import CacheService, CacheServiceConfig
    from workbench.config import load_settings

    settings = load_settings()
    config = CacheServiceConfig.from_settings(settings)
    # A CLI run talks to Redis directly (no memory front), and fails loudly when Redis is
    # out rather than fill or flush a memory tier that ends with the process.
    return CacheService.from_settings(replace(config, two_tier=False, strict=True), settings)


def _run(coro_fn: Any) -> Any:
    async def main() -> Any:
        service = _service()
        try:
            return await coro_fn(service)
        finally:
            await service.aclose()

    return asyncio.run(main())


def _stats(args: argparse.Namespace) -> int:
    async def go(service: Any) -> dict[str, Any]:
        return dict(await service.overview(args.service))

    out = _run(go)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0 if "error" not in out else 1
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if "error" in out:
        console.print(f"[red]Redis does not answer: {out['error']}")
        return 1
    where = out.get("url", out["backend"])
    lines = [f"backend: {out['backend']} {where}"]
    if out["backend"] != "memory":
        lines.append(
            f"latency {out['latency_ms']:.2f} ms, memory {out['used_memory']}, "
            f"{out['connected_clients']} clients, up {out['uptime_s']} s, "
            f"key prefix {out['key_prefix']!r}"
        )
    for line in lines:
        console.print(line, markup=False, highlight=False)
    table = Table(title="keys per namespace" + (" (truncated)" if out["truncated"] else ""))
    table.add_column("service")
    table.add_column("keys", justify="right")
    for name, count in out["namespaces"].items():
        table.add_row(name, str(count))
    console.print(table)
    return 0


def _warm(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from workbench.cache import Cache
    from workbench.cache.service import CacheService, CacheServiceConfig
    from workbench.cache.warming import warm
    from workbench.config import load_settings

    settings = load_settings()
    config = CacheServiceConfig.from_settings(settings)
    service = CacheService.from_settings(config, settings)
    name = CacheService.check_service(args.service, "--service")
    ttl = service.ttl(args.ttl, "--ttl")
    cache_config = replace(
        config.cache_config(name, service.key_prefix), two_tier=False, strict=True
    )
    with Cache(service.url, cluster=config.cluster, config=cache_config) as cache:
        report = warm(
            cache,
            Path(args.file),
            ttl=ttl,
            batch=min(500, config.max_warm_items),
            progress=True,
        )
    print(f"warmed {report.loaded} keys into service {name!r} in {report.seconds:.2f} s")
    if report.bad_total:
        print(f"{report.bad_total} items refused:", file=sys.stderr)
        for bad in report.bad:
            print(f"  line {bad.line} ({bad.key!r}): {bad.reason}", file=sys.stderr)
        return 1
    return 0


def _flush(args: argparse.Namespace) -> int:
    from workbench.cache.service import CacheService

    CacheService.check_service(args.service, "--service")
    if not args.yes:
        print(
            f"workbench: refusing to delete every key of service {args.service!r} without --yes",
            file=sys.stderr,
        )
        return 2

    async def go(service: Any) -> int:
        return int(await service.flush(args.service))

    count = _run(go)
    print(f"deleted {count} keys of service {args.service!r}")
    return 0
