"""``workbench analytics <verb>``: load execution records, summarise them, export them.

- ``ingest FILE [--format F] [--batch N]``: stream a JSON Lines, CSV or Parquet file into the
  store with a progress bar (:func:`workbench.analytics.files.ingest_file`); refused records
  are listed with their position and make the exit status 1, the others are stored;
- ``ingest --stream NAME [--group G] [--consumer C] [--for-seconds N] [--until-idle]``:
  consume a Redis stream with a :class:`~workbench.analytics.streams.StreamConsumer` until
  interrupted, for ``N`` seconds, or (``--until-idle``) until a read finds nothing new;
- ``summary [--task-type T] [--limit N] [--json]``: records, success rate and the best
  parameter sets by weighted score;
- ``export FILE [--format parquet|csv|jsonl] [--task-type T]``: the records, in a file that
  ``ingest`` reads back unchanged.

The store is the one ``workbench serve`` uses (``[analytics] store``, default
``<data dir>/analytics.duckdb``). The embedded DuckDB store admits one process: while the
server holds it, these commands exit 2 naming the fix (a PostgreSQL store).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from typing import Any

__all__ = ["register"]

_SHOWN_REJECTIONS = 20


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "analytics", help="execution records: ingest (file or stream), summary, export"
    )
    sub = p.add_subparsers(dest="analytics_verb")
    i = sub.add_parser("ingest", help="load a JSONL/CSV/Parquet file, or consume a Redis stream")
    i.add_argument("file", nargs="?", help="a .jsonl, .csv or .parquet file of records")
    i.add_argument("--format", choices=("jsonl", "csv", "parquet"), default=None)
    i.add_argument("--batch", type=int, default=100_000, help="records per transaction")
    i.add_argument("--stream", default=None, help="consume this Redis stream instead of a file")
    i.add_argument("--group", default=None, help="consumer group (default: [analytics] group)")
    i.add_argument("--consumer", default=None, help="consumer name (default: host-pid)")
    i.add_argument("--for-seconds", type=float, default=None, help="stop after this long")
    i.add_argument("--until-idle", action="store_true", help="stop once a read finds no new entry")
    i.set_defaults(func=_ingest)
    s = sub.add_parser("summary", help="records, success rate, best parameter sets")
    s.add_argument("--task-type", default=None, help="only this task type")
    s.add_argument("--limit", type=int, default=10, help="parameter sets listed (default 10)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=_summary)
    e = sub.add_parser("export", help="write the records to a Parquet, CSV or JSONL file")
    e.add_argument("file", help="the file to write")
    e.add_argument("--format", choices=("parquet", "csv", "jsonl"), default=None)
    e.add_argument("--task-type", default=None, help="only this task type")
    e.set_defaults(func=_export)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _config() -> Any:
    from workbench.analytics.service import AnalyticsConfig
    from workbench.config import load_settings

    return AnalyticsConfig.from_settings(load_settings())


def _store(config: Any) -> Any:
    from workbench.analytics.store import AnalyticsStore

    return AnalyticsStore(
        config.store,
        max_task_types=config.max_task_types,
        max_models=config.max_models,
        max_parameter_sets=config.max_parameter_sets,
    )


def _ingest(args: argparse.Namespace) -> int:
    if (args.file is None) == (args.stream is None):
        print("workbench: error: give a FILE or --stream NAME (one of them)", file=sys.stderr)
        return 2
    if args.for_seconds is not None and not args.for_seconds > 0:
        print("workbench: error: --for-seconds must be positive", file=sys.stderr)
        return 2
    config = _config()
    if args.stream is not None:
        return _consume(args, config)
    from workbench.analytics.files import ingest_file

    with _store(config) as store:
        report = ingest_file(store, args.file, format=args.format, batch=args.batch, progress=True)
    print(
        f"read {report.rows} records: {report.accepted} stored, {report.duplicates} already "
        f"stored, {report.rejected_total} refused ({report.chunks} transactions, "
        f"{report.seconds:.2f} s)"
    )
    if report.rejected_total:
        for r in report.rejected[:_SHOWN_REJECTIONS]:
            print(f"  record {r.index} ({r.field}): {r.reason}", file=sys.stderr)
        more = report.rejected_total - min(len(report.rejected), _SHOWN_REJECTIONS)
        if more > 0:
            print(f"  ... and {more} more", file=sys.stderr)
        return 1
    return 0


def _consume(args: argparse.Namespace, config: Any) -> int:
    from workbench.analytics.streams import ConsumeReport, StreamConsumer
    from workbench.config import load_settings
    from workbench.redis_adapter import RedisAdapter

    adapter = RedisAdapter.from_settings(load_settings())
    consumer_name = args.consumer or f"{socket.gethostname()}-{os.getpid()}"
    stop = threading.Event()
    total = ConsumeReport()
    deadline = None if args.for_seconds is None else time.monotonic() + args.for_seconds
    with _store(config) as store:
        consumer = StreamConsumer(
            adapter,
            store,
            stream=args.stream,
            group=args.group or config.group,
            consumer=consumer_name,
            block_ms=200 if args.until_idle else 1000,
        )
        try:
            while not stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                done = consumer.run_once()
                total += done
                if done.entries:
                    print(
                        f"\r{total.records} records: {total.accepted} stored, "
                        f"{total.duplicates} already stored, {total.rejected} refused",
                        end="",
                        file=sys.stderr,
                    )
                elif args.until_idle:
                    break
        except KeyboardInterrupt:
            pass
    print(file=sys.stderr)
    print(
        f"stream {args.stream!r}: {total.entries} entries, {total.records} records, "
        f"{total.accepted} stored, {total.duplicates} already stored, {total.rejected} refused, "
        f"{total.malformed} malformed, {total.claimed} claimed"
    )
    return 0


def _summary(args: argparse.Namespace) -> int:
    from workbench.analytics.store import Filters

    filters = Filters(task_types=(args.task_type,)) if args.task_type else None
    with _store(_config()) as store:
        eff = store.effectiveness(("task_type", "parameter_hash"), filters)
    total = int(eff["executions"].sum()) if len(eff) else 0
    successes = int(eff["successes"].sum()) if len(eff) else 0
    best = eff.sort_values(["score", "executions"], ascending=[False, False]).head(args.limit)
    rows: list[dict[str, Any]] = [
        {
            "task_type": r["task_type"],
            "parameter_hash": r["parameter_hash"],
            "parameters": r["parameters"],
            "executions": int(r["executions"]),
            "success_rate": float(r["success_rate"]),
            "latency_p95_ms": float(r["latency_p95_ms"]),
            "score": float(r["score"]),
        }
        for r in best.to_dict(orient="records")
    ]
    out: dict[str, Any] = {
        "records": int(total),
        "success_rate": successes / total if total else None,
        "task_types": int(eff["task_type"].nunique()) if len(eff) else 0,
        "parameter_sets": len(eff),
        "best": rows,
    }
    if args.json:
        from workbench.api.envelope import to_jsonable

        print(json.dumps(to_jsonable(out), indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    rate = "n/a" if out["success_rate"] is None else f"{out['success_rate']:.1%}"
    console.print(
        f"{out['records']} records, success rate {rate}, {out['task_types']} task types, "
        f"{out['parameter_sets']} parameter sets",
        markup=False,
        highlight=False,
    )
    table = Table(title="best parameter sets by weighted score")
    for col in ("task type", "parameters", "executions", "success", "p95 ms", "score"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["task_type"],
            json.dumps(r["parameters"], sort_keys=True),
            str(r["executions"]),
            f"{r['success_rate']:.1%}",
            f"{r['latency_p95_ms']:.0f}",
            f"{r['score']:.3f}",
        )
    console.print(table)
    return 0


def _export(args: argparse.Namespace) -> int:
    from workbench.analytics.files import export
    from workbench.analytics.store import Filters

    filters = Filters(task_types=(args.task_type,)) if args.task_type else None
    with _store(_config()) as store:
        n = export(store, args.file, filters, format=args.format)
    print(f"wrote {n} records to {args.file}")
    return 0
