"""Hostile records: refused with the field and a reason, or stored verbatim and read back.

Every backend; after each batch the tables are still there and hold exactly what was accepted.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from workbench.analytics import AnalyticsStore

pytestmark = pytest.mark.postgres

INJECTION = "'); DROP TABLE executions; --"


def base(i: int, **changes: Any) -> dict[str, Any]:
    record = {
        "execution_id": f"h-{i}",
        "timestamp": 1_700_000_000,
        "task_type": "code",
        "model": "m",
        "parameters": {"t": 0.5},
        "latency_ms": 5.0,
        "success": True,
        "quality": 0.5,
    }
    record.update(changes)
    return record


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


REFUSED = [
    ("execution_id", {"execution_id": 12345}),
    ("execution_id", {"execution_id": "x" * 129}),
    ("execution_id", {"execution_id": "a\x00b"}),
    ("execution_id", {"execution_id": "lone \ud800 surrogate"}),
    ("execution_id", {"execution_id": b"\xff\xfe bytes"}),
    ("timestamp", {"timestamp": math.inf}),
    ("timestamp", {"timestamp": "2024-13-45"}),
    ("task_type", {"task_type": INJECTION}),
    ("task_type", {"task_type": "x" * 10_000}),
    ("model", {"model": "m" * 1_000_000}),
    ("model", {"model": "bad \udfff"}),
    ("provider", {"provider": b"\xc3\x28"}),
    ("parameters", {"parameters": {"t": math.nan}}),
    ("parameters", {"parameters": {"t": -math.inf}}),
    ("parameters", {"parameters": _deep(50)}),
    ("parameters", {"parameters": {f"k{i}": i for i in range(65)}}),
    ("parameters", {"parameters": {"blob": "x" * 5000}}),
    ("parameters", {"parameters": {"s": "\ud83d"}}),
    ("parameters", {"parameters": "[" * 100_000}),
    ("parameters", {"parameters": {"n": 10**5000}}),
    ("latency_ms", {"latency_ms": math.nan}),
    ("latency_ms", {"latency_ms": math.inf}),
    ("latency_ms", {"latency_ms": "1; DROP TABLE executions"}),
    ("latency_ms", {"latency_ms": 10**400}),
    ("success", {"success": "maybe"}),
    ("quality", {"quality": math.inf}),
    ("complexity", {"complexity": INJECTION}),
]


def test_hostile_records_are_refused_with_field_and_reason(store: AnalyticsStore) -> None:
    records = [base(i, **changes) for i, (_, changes) in enumerate(REFUSED)]
    report = store.ingest(records)
    got = [(r.index, r.field) for r in report.rejected]
    assert got == [(i, field) for i, (field, _) in enumerate(REFUSED)]
    assert all(r.reason for r in report.rejected)
    assert report.accepted == 0
    assert store.count() == 0  # the table is there and empty


VERBATIM = [
    {"execution_id": INJECTION},
    {"execution_id": "quote ' double \" backslash \\ percent %s %(x)s ?"},
    {"model": INJECTION, "provider": "'; --", "user_id": "Robert'); DROP TABLE x;--"},
    {"session_id": "ünïcødé ✓ 雨 🚀", "error_class": "tab\tand\nnewline"},
    {
        "parameters": {
            "prompt": INJECTION,
            "emoji": "🚀",
            "nul": "a\x00b",
            "nested": [[1], {"x": None}],
        }
    },
    {"parameters": {"system": "y" * 3000}},
    {"parameters": _deep(4)},  # the deepest nesting allowed
]


def test_metacharacters_and_unicode_are_stored_verbatim(store: AnalyticsStore) -> None:
    records = [base(100 + i, **changes) for i, changes in enumerate(VERBATIM)]
    report = store.ingest(records)
    assert report.rejected == [] and report.accepted == len(VERBATIM)
    frame = store.frame().set_index("execution_id", drop=False)
    assert store.count() == len(VERBATIM)
    for rec in records:
        row = frame.loc[rec["execution_id"]]
        for key, value in rec.items():
            if key in ("timestamp", "success", "latency_ms", "quality"):
                continue
            assert row[key] == value, key
    # replaying the hostile batch is still idempotent, and the tables still exist
    assert store.ingest(records).duplicates == len(VERBATIM)
    assert store.count_by("model")[INJECTION] == 1
    eff = store.effectiveness(by=("model",))
    assert INJECTION in set(eff["model"])
