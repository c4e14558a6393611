"""The record schema: the stable parameter hash and validation of lists and frames alike."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.analytics.records import COLUMNS, canonical_json, parameter_hash, validate
from workbench.errors import InputError

NOW = 1_750_000_000.0


def good(i: int = 0, **changes: Any) -> dict[str, Any]:
    record = {
        "execution_id": f"ex-{i}",
        "timestamp": "2024-05-01T12:00:00Z",
        "task_type": "code",
        "model": "gpt-4o",
        "parameters": {"temperature": 0.7, "max_tokens": 512},
        "latency_ms": 120.5,
        "success": True,
        "quality": 0.8,
    }
    record.update(changes)
    return record


def test_hash_ignores_key_order_and_int_valued_floats() -> None:
    a = {"b": 1, "a": 0.5, "nested": {"y": [1, 2.0], "x": -0.0}}
    b = {"nested": {"x": 0, "y": [1.0, 2]}, "a": 0.5, "b": 1.0}
    assert canonical_json(a) == canonical_json(b) == '{"a":0.5,"b":1,"nested":{"x":0,"y":[1,2]}}'
    assert parameter_hash(a) == parameter_hash(b) == parameter_hash(canonical_json(b))
    golden = hashlib.sha256(b'{"a":0.5,"b":1}').hexdigest()
    assert parameter_hash({"b": 1.0, "a": 0.5}) == golden
    # what must differ does
    assert parameter_hash({"a": 1}) != parameter_hash({"a": True})
    assert parameter_hash({"a": 0.1}) != parameter_hash({"a": 0.10000000000000002})
    assert parameter_hash({"temperature": 0.7}) != parameter_hash({"temperature": 0.8})
    assert parameter_hash({"a": "é"}) == hashlib.sha256('{"a":"é"}'.encode()).hexdigest()


@pytest.mark.parametrize(
    "params",
    [{"a": math.nan}, {"a": math.inf}, {1: 2}, [1, 2], "not json", {"a": {"b": {"c": {"d": {}}}}}],
)
def test_canonical_json_refuses_what_json_cannot_hold_exactly(params: Any) -> None:
    with pytest.raises(InputError, match="parameters"):
        canonical_json(params)


def test_validate_converts_every_accepted_form() -> None:
    stamp = datetime(2024, 5, 1, 12, tzinfo=UTC)
    forms = [
        "2024-05-01T12:00:00Z",
        "2024-05-01T14:00:00+02:00",
        "2024-05-01T12:00:00",
        stamp,
        stamp.replace(tzinfo=None),
        pd.Timestamp(stamp),
        stamp.timestamp(),
        int(stamp.timestamp()),
        np.datetime64("2024-05-01T12:00:00"),
    ]
    records = [
        good(i, timestamp=t, success=s)
        for i, (t, s) in enumerate(
            zip(forms, [True, 1, "true", "False", 0, False, 1.0, True, True], strict=True)
        )
    ]
    checked = validate(records, now=NOW)
    assert checked.rejected == []
    assert list(checked.frame.columns) == list(COLUMNS)
    assert set(checked.frame["timestamp"]) == {int(stamp.timestamp()) * 1_000_000}
    assert checked.frame["success"].tolist() == [
        True,
        True,
        True,
        False,
        False,
        False,
        True,
        True,
        True,
    ]
    assert checked.frame["provider"].iloc[0] == "unknown"
    assert checked.frame["prompt_tokens"].dtype == np.int64
    assert checked.frame["success"].dtype == bool
    assert checked.frame["execution_id"].dtype == object


def test_rejections_name_index_field_and_reason() -> None:
    records = [
        good(0),
        good(1, task_type="has space"),
        good(2, latency_ms=-1),
        good(0),
        "not a record",
        good(5, parameter_hash="0" * 64),
        good(6, timestamp=datetime.now(UTC) + timedelta(days=400)),
        good(7, quality=1.5),
    ]
    checked = validate(records, now=NOW)
    got = [(r.index, r.field) for r in checked.rejected]
    assert got == [
        (1, "task_type"),
        (2, "latency_ms"),
        (3, "execution_id"),
        (4, "record"),
        (5, "parameter_hash"),
        (6, "timestamp"),
        (7, "quality"),
    ]
    assert checked.rejected[2].reason == "duplicate execution_id in batch"
    assert checked.frame.index.tolist() == [0]
    assert checked.rejected[0].to_dict() == {
        "index": 1,
        "field": "task_type",
        "reason": "must match [A-Za-z0-9_.:-]+",
    }


def test_arrow_and_frame_inputs_agree() -> None:
    records = [good(i, quality=None if i % 3 else 0.5) for i in range(50)]
    records[7]["latency_ms"] = -3.0
    from_list = validate(records, now=NOW)
    frame = pd.DataFrame(records)
    frame["parameters"] = [canonical_json(p) for p in frame["parameters"]]
    from_arrow = validate(pa.Table.from_pandas(frame), now=NOW)
    pd.testing.assert_frame_equal(from_list.frame, from_arrow.frame)
    assert from_list.rejected == from_arrow.rejected


# -- property: a list of dicts and the DataFrame built from it get the same verdicts ---------

_GOOD = {
    "timestamp": st.sampled_from(
        [1_700_000_000, 1_700_000_000.25, "2024-01-01T00:00:00Z", datetime(2024, 1, 2)]
    ),
    "task_type": st.sampled_from(["code", "chat.v2"]),
    "model": st.sampled_from(["m", "llama3:8b"]),
    "provider": st.sampled_from(["openai", ""]),
    "parameters": st.sampled_from(
        [{"t": 0.5}, {"b": [1, 2.0], "a": None}, '{"t": 1.0}', {"t": 0.5, "k": "v"}]
    ),
    "prompt_tokens": st.sampled_from([0, 17, 17.0]),
    "latency_ms": st.sampled_from([0, 10, 12.5]),
    "cost": st.sampled_from([0.0, 0.25]),
    "success": st.sampled_from([True, False, 1, 0, "true", "FALSE"]),
    "quality": st.sampled_from([0.0, 0.5, 1, None, math.nan]),
    "complexity": st.sampled_from(["simple", "complex", ""]),
}
_BAD = {
    "timestamp": st.sampled_from(["yesterday", True, 1e20, -5, 10**30, [1]]),
    "task_type": st.sampled_from(["with space", "", 5, "x" * 65, "é"]),
    "model": st.sampled_from(["", ["m"], "m\x00"]),
    "provider": st.sampled_from([3.5, "p" * 65]),
    "parameters": st.sampled_from(
        [{"t": math.nan}, [1], "not json", {"a": {"b": {"c": {"d": {}}}}}, {2: 1}, "[1]"]
    ),
    "prompt_tokens": st.sampled_from([-1, 1.5, "5", True, 10**8]),
    "latency_ms": st.sampled_from([-1, "fast", math.inf, 4e6, False]),
    "cost": st.sampled_from([-0.5, "free", math.inf]),
    "success": st.sampled_from(["yes", 2, 0.5]),
    "quality": st.sampled_from([2, -0.1, "high"]),
    "complexity": st.sampled_from(["hard", 1]),
}
_REQUIRED = {"timestamp", "task_type", "model", "parameters", "latency_ms", "success"}


@st.composite
def record(draw: st.DrawFn, i: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "execution_id": draw(st.sampled_from([f"id-{i}", f"id-{i % 3}", "", 7, "a\tb"]))
    }
    for name, strategy in _GOOD.items():
        choice = draw(st.sampled_from(["good", "good", "good", "bad", "absent"]))
        if choice == "good":
            out[name] = draw(strategy)
        elif choice == "bad":
            out[name] = draw(_BAD[name])
        elif name in _REQUIRED and draw(st.booleans()):
            out[name] = None
    return out


@st.composite
def batch(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 12))
    return [draw(record(i)) for i in range(n)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch())
def test_list_and_frame_paths_agree(records: list[dict[str, Any]]) -> None:
    from_list = validate(records, now=NOW)
    from_frame = validate(pd.DataFrame(records), now=NOW)
    assert from_list.rejected == from_frame.rejected
    pd.testing.assert_frame_equal(from_list.frame, from_frame.frame)
    # and each record alone gets the verdict it got in the batch (duplicates aside)
    in_batch = {r.index: r for r in from_list.rejected}
    for i, rec in enumerate(records):
        alone = validate([rec], now=NOW)
        if i in in_batch and in_batch[i].reason != "duplicate execution_id in batch":
            assert [(r.field, r.reason) for r in alone.rejected] == [
                (in_batch[i].field, in_batch[i].reason)
            ]
        elif i not in in_batch:
            assert alone.rejected == []
