"""The execution record: its schema, validation and the stable parameter hash.

One record per LLM or agent execution. Columns, in this order (the order of
:data:`COLUMNS` and of :attr:`Validated.frame`), with the bounds :func:`validate` enforces:

====================  ==========  ===========  =====================================================
column                type        required     bounds and accepted input
====================  ==========  ===========  =====================================================
execution_id          str         yes          1..128 printable characters; the idempotency key
timestamp             int64 (us)  yes          2000-01-01 .. now + 1 day, stored as microseconds
                                               since the epoch, UTC; accepts ISO 8601 text
                                               (naive means UTC), datetime, pandas Timestamp,
                                               numpy datetime64, epoch seconds (int or float)
task_type             str         yes          1..64 characters of ``[A-Za-z0-9_.:-]``
model                 str         yes          1..128 characters
provider              str         no           0..64 characters; missing -> ``"unknown"``
user_id               str         no           0..128 characters; missing -> ``""``
session_id            str         no           0..128 characters; missing -> ``""``
parameters            dict        yes          a JSON object (a mapping, or JSON text of one):
                                               depth <= 4, <= 64 keys per object, string keys,
                                               finite numbers, canonical JSON <= 4096 bytes
parameter_hash        str         computed     SHA-256 hex of the canonical JSON; a caller's
                                               value must equal it or the record is rejected
prompt_tokens         int64       no (0)       integer 0..10_000_000
completion_tokens     int64       no (0)       integer 0..10_000_000
latency_ms            float64     yes          0..3_600_000, finite
cost                  float64     no (0)       0..1_000_000, finite
success               bool        yes          true/false, 0/1, ``"true"``/``"false"``
error_class           str         no           0..64 characters; missing -> ``""``
quality               float64     nullable     0..1; missing, None or NaN means unknown (NaN)
user_satisfaction     float64     no           0..5; NaN until feedback sets it
complexity            str         no           ``simple``, ``medium``, ``complex`` or ``""``
====================  ==========  ===========  =====================================================

"Missing" means an absent key or column, ``None``, NaN, ``pd.NA`` or ``NaT``: a DataFrame
built from a list of dicts turns absent keys into NaN, so the two inputs must mean the same.
Every text value must be valid UTF-8 text without NUL characters (no lone surrogates), so each
store keeps it verbatim. Unknown keys or columns are ignored. A batch holds at most
:data:`MAX_BATCH_ROWS` records.

Canonical JSON (:func:`canonical_json`) is ``json.dumps(obj, sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` after normalising numbers: bools stay bools, an
integer-valued float with ``|x| < 2**53`` becomes an int (``1.0 -> 1``, ``-0.0 -> 0``; beyond
2**53 a float is not an exact integer and keeps its repr), other floats keep Python's
shortest repr, NaN and infinities are refused; tuples are arrays. So ``{"b": 1, "a": 0.5}``
and ``{"a": 0.5, "b": 1.0}`` hash the same, and key order never matters.

How validation runs: column by column, for lists of dicts and DataFrames/Arrow tables alike.
A list is first turned into one object array per column (per item, so a bad item never spoils
its neighbours); frames keep their typed numpy columns and take vectorised fast paths (masks
over int/float/bool/datetime64 arrays; string checks once per distinct value). A record with
several problems is reported once, for the first failing column in the order above, so a
DataFrame and the list it was built from get the same verdicts (a property test checks it).
Canonical JSON is computed once per distinct parameter object (by ``id``) or JSON text.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import InputError

__all__ = [
    "COLUMNS",
    "MAX_BATCH_ROWS",
    "MAX_PARAMETERS_BYTES",
    "Rejection",
    "Validated",
    "canonical_json",
    "parameter_hash",
    "validate",
]

COLUMNS: tuple[str, ...] = (
    "execution_id",
    "timestamp",
    "task_type",
    "model",
    "provider",
    "user_id",
    "session_id",
    "parameters",
    "parameter_hash",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "cost",
    "success",
    "error_class",
    "quality",
    "user_satisfaction",
    "complexity",
)
STRING_COLUMNS = frozenset(
    {
        "execution_id",
        "task_type",
        "model",
        "provider",
        "user_id",
        "session_id",
        "parameter_hash",
        "error_class",
        "complexity",
    }
)
MAX_BATCH_ROWS = 5_000_000
MAX_PARAMETERS_BYTES = 4096
MAX_PARAMETERS_DEPTH = 4
MAX_PARAMETERS_KEYS = 64
COMPLEXITIES = ("simple", "medium", "complex", "")
EARLIEST_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z
_DAY_US = 86_400_000_000
_EXACT_INT = 2.0**53
_TASK_TYPE = re.compile(r"[A-Za-z0-9_.:-]+")
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Rejection:
    """One refused record.

    Attributes:
        index: Position of the record in the input (0-based).
        field: The column that failed (``"record"`` when the item is not a mapping).
        reason: What is wrong and what is allowed.
    """

    index: int
    field: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """``{"index", "field", "reason"}``."""
        return {"index": self.index, "field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class Validated:
    """The outcome of :func:`validate`.

    Attributes:
        frame: The accepted records, columns :data:`COLUMNS` in order; dtypes: ``timestamp``,
            ``prompt_tokens`` and ``completion_tokens`` int64, text columns object (str),
            ``latency_ms``, ``cost``, ``quality`` and ``user_satisfaction`` float64 (NaN for
            unknown), ``success`` bool, ``parameters`` object (the normalised dict). Its index
            holds each row's position in the input.
        rejected: One :class:`Rejection` per refused record, by increasing index.
        parameter_sets: Canonical JSON by parameter hash, for every hash in ``frame``.
    """

    frame: pd.DataFrame
    rejected: list[Rejection]
    parameter_sets: Mapping[str, str] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        """Number of accepted records."""
        return len(self.frame)


class _Bad(Exception):
    """A value fails its column's rule (internal; becomes a Rejection)."""


# -- canonical JSON and the hash --------------------------------------------------------------


def _kind(value: Any) -> str:
    """A JSON-style name of a value's type for messages (the same for numpy and Python)."""
    if value is None:
        return "null"
    if isinstance(value, bool | np.bool_):
        return "boolean"
    if isinstance(value, int | float | np.integer | np.floating):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytes"
    return type(value).__name__


def _normalise(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        x = float(value)
        if not math.isfinite(x):
            raise _Bad(f"holds a non-finite number ({x!r}); use finite numbers only")
        if x.is_integer() and abs(x) < _EXACT_INT:
            return int(x)
        return x
    if isinstance(value, Mapping):
        if depth > MAX_PARAMETERS_DEPTH:
            raise _Bad(f"nest deeper than {MAX_PARAMETERS_DEPTH} levels")
        if len(value) > MAX_PARAMETERS_KEYS:
            raise _Bad(f"have an object of {len(value)} keys, more than {MAX_PARAMETERS_KEYS}")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Bad(f"have a key of type {_kind(key)}; object keys must be strings")
            out[str(key)] = _normalise(item, depth + 1)
        return out
    if isinstance(value, list | tuple):
        if depth > MAX_PARAMETERS_DEPTH:
            raise _Bad(f"nest deeper than {MAX_PARAMETERS_DEPTH} levels")
        return [_normalise(item, depth + 1) for item in value]
    raise _Bad(f"hold a value of type {_kind(value)}, which is not a JSON value")


def _canonical(params: Any) -> str:
    """Canonical JSON of one parameter object, or ``_Bad`` with the reason."""
    if isinstance(params, str):
        if len(params) > 4 * MAX_PARAMETERS_BYTES:
            raise _Bad(f"JSON text is longer than {MAX_PARAMETERS_BYTES} bytes")
        try:
            params = json.loads(params, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise _Bad(f"is not valid JSON text ({exc})") from None
    if not isinstance(params, Mapping):
        raise _Bad(f"must be a JSON object, got {_kind(params)}")
    try:
        text = json.dumps(
            _normalise(params, 1),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except RecursionError:
        raise _Bad(f"nest deeper than {MAX_PARAMETERS_DEPTH} levels") from None
    except ValueError as exc:  # an int too long to print
        raise _Bad(f"hold a number too large to write ({exc})") from None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise _Bad("hold text with a lone surrogate, which is not valid UTF-8") from None
    if size > MAX_PARAMETERS_BYTES:
        raise _Bad(f"take {size} bytes of canonical JSON, more than {MAX_PARAMETERS_BYTES}")
    return text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def canonical_json(params: Mapping[str, Any] | str) -> str:
    """The canonical JSON text of a parameter set (see the module docstring).

    Args:
        params: A mapping with string keys, or JSON text of an object.

    Raises:
        InputError: ``params`` is not a JSON object within the bounds.
    """
    try:
        return _canonical(params)
    except _Bad as exc:
        raise InputError(f"parameters {exc}", details={"field": "parameters"}) from None


def parameter_hash(params: Mapping[str, Any] | str) -> str:
    """SHA-256 hex digest of :func:`canonical_json` (UTF-8), the parameter set's key.

    Raises:
        InputError: as :func:`canonical_json`.
    """
    return hashlib.sha256(canonical_json(params).encode("utf-8")).hexdigest()


# -- column checks ---------------------------------------------------------------------------
#
# Each check takes the column (a numpy array, object or typed, or None when absent) and the
# mask of missing values, and returns (values, reasons): the converted column and an object
# array holding a reason string where a row fails (None where it passes).


def _missing_mask(col: np.ndarray) -> np.ndarray:
    if col.dtype.kind == "f":
        return np.isnan(col)
    if col.dtype.kind in "mM":
        return np.isnat(col)
    if col.dtype == object:
        return np.asarray(pd.isna(col), dtype=bool)
    return np.zeros(len(col), dtype=bool)


class _Reasons:
    """Why rows fail one column: a mask of failing rows and, where set, the reason text.

    Most rows pass, so the text array is allocated on the first failure only.
    """

    __slots__ = ("bad", "text")

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self.text: np.ndarray | None = None

    def _text(self) -> np.ndarray:
        if self.text is None:
            self.text = np.full(len(self.bad), None, dtype=object)
        return self.text

    def __setitem__(self, key: Any, reason: str) -> None:
        if isinstance(key, np.ndarray) and key.dtype == bool and not key.any():
            return
        self.bad[key] = True
        self._text()[key] = reason

    def absorb(self, other: _Reasons) -> None:
        """Take every failure of ``other``."""
        if other.text is not None:
            self.bad |= other.bad
            self._text()[other.bad] = other.text[other.bad]

    def spread(self, unique_reasons: np.ndarray, codes: np.ndarray, rows: np.ndarray) -> None:
        """Row ``rows[j]`` fails with ``unique_reasons[codes[j]]`` where that is not None."""
        failing = np.array([r is not None for r in unique_reasons.tolist()], dtype=bool)
        if len(failing) == 0 or not failing.any():
            return
        hit = failing[codes]
        self.bad[rows[hit]] = True
        self._text()[rows[hit]] = unique_reasons[codes[hit]]


def _per_value(
    col: np.ndarray, rows: np.ndarray, check: Callable[[Any], Any], out: np.ndarray
) -> _Reasons:
    """Apply ``check`` (value -> converted, or raise _Bad) to ``col[rows]``; fill ``out``."""
    reasons = _Reasons(len(col))
    for i in rows:
        try:
            out[i] = check(col[i])
        except _Bad as exc:
            reasons[i] = str(exc)
    return reasons


def _text_rule(
    lo: int, hi: int, *, pattern: re.Pattern[str] | None = None, printable: bool = False
) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _Bad(f"must be a string, got {_kind(value)}")
        if not lo <= len(value) <= hi:
            raise _Bad(f"must be {lo}..{hi} characters long, got {len(value)}")
        if printable and not value.isprintable():
            raise _Bad("must hold printable characters only")
        if _BAD_TEXT.search(value):
            raise _Bad("holds a NUL character or a lone surrogate, which no store keeps")
        if pattern is not None and not pattern.fullmatch(value):
            raise _Bad(f"must match {pattern.pattern}")
        return str(value)

    return check


def _check_text(
    col: np.ndarray | None,
    missing: np.ndarray,
    n: int,
    rule: Callable[[Any], str],
    *,
    default: str | None,
    unique: bool = True,
) -> tuple[np.ndarray, _Reasons]:
    out = np.empty(n, dtype=object)
    reasons = _Reasons(n)
    if default is None:
        reasons[missing] = "is required"
    else:
        out[missing] = default
    present = np.flatnonzero(~missing)
    if col is None or len(present) == 0:
        return out, reasons
    if col.dtype != object:  # a numeric, bool or datetime column is never text
        values = col[present]
        for i, v in zip(present, values.tolist(), strict=True):
            reasons[i] = f"must be a string, got {_kind(v)}"
        return out, reasons
    values = col[present]
    if unique and pd.api.types.infer_dtype(values, skipna=False) == "string":
        codes, uniques = pd.factorize(values)
        conv = np.empty(len(uniques), dtype=object)
        why = _per_value(np.asarray(uniques, dtype=object), np.arange(len(uniques)), rule, conv)
        out[present] = conv[codes]
        if why.text is not None:
            reasons.spread(why.text, codes, present)
        return out, reasons
    got = _per_value(col, present, rule, out)
    reasons.absorb(got)
    return out, reasons


def _check_execution_ids(
    col: np.ndarray | None, missing: np.ndarray, n: int
) -> tuple[np.ndarray, _Reasons]:
    rule = _text_rule(1, 128, printable=True)
    if col is not None and col.dtype == object and not missing.any():
        values = col
        if pd.api.types.infer_dtype(values, skipna=False) == "string":
            lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
            printable = np.fromiter(map(str.isprintable, values), dtype=bool, count=n)
            suspect = np.flatnonzero((lengths < 1) | (lengths > 128) | ~printable)
            out = values.copy()
            reasons = _per_value(values, suspect, rule, out)
            return out, reasons
    return _check_text(col, missing, n, rule, default=None, unique=False)


def _to_us(value: Any) -> int:
    """Microseconds since the epoch (UTC) of one accepted timestamp value, or _Bad."""
    if isinstance(value, bool | np.bool_):
        raise _Bad("must be a timestamp, got boolean")
    if isinstance(value, int | np.integer):
        return int(value) * 1_000_000
    if isinstance(value, float | np.floating):
        scaled = float(value) * 1e6
        if not math.isfinite(scaled):
            raise _Bad("must be a finite number of epoch seconds")
        return round(scaled)
    if isinstance(value, str):
        if len(value) > 64:
            raise _Bad("must be an ISO 8601 timestamp of at most 64 characters")
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise _Bad("must be an ISO 8601 timestamp such as 2024-05-01T12:00:00Z") from None
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, pd.Timestamp):
        if value.tzinfo is None:
            value = value.tz_localize(UTC)
        return int(value.value) // 1000
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return (value - _EPOCH) // _ONE_US
    raise _Bad(f"must be an ISO 8601 string, a datetime or epoch seconds, got {_kind(value)}")


_ONE_US = pd.Timedelta(microseconds=1).to_pytimedelta()


def _check_timestamps(
    col: np.ndarray | None, missing: np.ndarray, n: int, now_us: int
) -> tuple[np.ndarray, _Reasons]:
    reasons = _Reasons(n)
    reasons[missing] = "is required"
    out = np.zeros(n, dtype=np.int64)
    present = ~missing
    if col is None or not present.any():
        return out, reasons
    kind = col.dtype.kind
    us: np.ndarray
    if kind == "M":
        unit, _ = np.datetime_data(col.dtype)
        raw = col.astype(f"datetime64[{unit}]").view(np.int64)
        factor = {"s": 1_000_000, "ms": 1000, "us": 1, "ns": -1000}.get(unit)
        if factor is None:
            raw = col.astype("datetime64[us]").view(np.int64)
            factor = 1
        us = raw // 1000 if factor == -1000 else raw * factor
    elif kind in "iu":
        # seconds beyond +-1e12 are out of range anyway; clipping keeps the product in int64
        us = np.clip(col, -(10**12), 10**12).astype(np.int64) * 1_000_000
    elif kind == "f":
        scaled = col * 1e6
        finite = np.isfinite(scaled)
        reasons[present & ~finite] = "must be a finite number of epoch seconds"
        clipped = np.where(finite & (np.abs(scaled) < 9e18), scaled, 9e18)
        us = np.round(clipped).astype(np.int64)
    elif kind == "b":
        reasons[present] = "must be a timestamp, got boolean"
        return out, reasons
    else:
        obj = np.empty(n, dtype=object)
        got = _per_value(col, np.flatnonzero(present), _to_us, obj)
        reasons.absorb(got)
        ok = present & ~reasons.bad
        us = np.zeros(n, dtype=np.int64)
        rows = np.flatnonzero(ok)
        hi = now_us + _DAY_US
        for i in rows:  # Python ints may exceed int64; range-check before converting
            v = obj[i]
            if v < EARLIEST_US or v > hi:
                reasons[i] = _RANGE
            else:
                us[i] = v
        out[:] = us
        return out, reasons
    ok = present & ~reasons.bad
    hi = now_us + _DAY_US
    bad = ok & ((us < EARLIEST_US) | (us > hi))
    for i in np.flatnonzero(bad):
        reasons[i] = _RANGE
    out[:] = us
    return out, reasons


_RANGE = "must lie between 2000-01-01 and one day from now (UTC)"


def _all_plain_numbers(values: np.ndarray) -> bool:
    """Whether every value is a Python/numpy int or float (no bools) that fits a float."""
    if pd.api.types.infer_dtype(values, skipna=False) not in (
        "integer",
        "floating",
        "mixed-integer-float",
    ):
        return False
    try:
        values.astype(np.float64)
    except OverflowError:
        return False
    return True


def _number_rule(lo: float, hi: float, integer: bool) -> Callable[[Any], float]:
    what = "an integer" if integer else "a number"

    def check(value: Any) -> float:
        if isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | np.integer | np.floating
        ):
            raise _Bad(f"must be {what}, got {_kind(value)}")
        try:
            x = float(value)
        except OverflowError:
            raise _Bad(f"must lie between {lo:g} and {hi:g}") from None
        return x

    return check


def _check_numbers(
    col: np.ndarray | None,
    missing: np.ndarray,
    n: int,
    *,
    lo: float,
    hi: float,
    integer: bool = False,
    default: float | None,
) -> tuple[np.ndarray, _Reasons]:
    """``default=None``: required; ``default=nan``: nullable (missing stays NaN)."""
    reasons = _Reasons(n)
    values = np.full(n, np.nan if default is None else default, dtype=np.float64)
    if default is None:
        reasons[missing] = "is required"
    present = ~missing
    if col is not None and present.any():
        kind = col.dtype.kind
        if kind == "b":
            reasons[present] = f"must be {'an integer' if integer else 'a number'}, got boolean"
            return values, reasons
        if kind in "iuf":
            x = col.astype(np.float64)
        elif _all_plain_numbers(col[present]):
            x = np.full(n, np.nan)
            x[present] = col[present].astype(np.float64)
        else:
            x = np.full(n, np.nan)
            rule = _number_rule(lo, hi, integer)
            got = _per_value(col, np.flatnonzero(present), rule, x)
            reasons.absorb(got)
        ok = present & ~reasons.bad
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(x)
            bad_finite = ok & ~finite
            reasons[bad_finite] = "must be a finite number"
            ok &= finite
            if integer:
                frac = ok & (np.floor(x) != x)
                reasons[frac] = "must be an integer"
                ok &= ~frac
            out_of = ok & ((x < lo) | (x > hi))
        reasons[out_of] = f"must lie between {lo:g} and {hi:g}"
        ok &= ~out_of
        values[ok] = x[ok]
    return values, reasons


_TRUE_TEXT = {"true": True, "false": False}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating):
        if value == 0 or value == 1:
            return bool(value == 1)
    elif isinstance(value, str) and value.lower() in _TRUE_TEXT:
        return _TRUE_TEXT[value.lower()]
    raise _Bad("must be a boolean (true/false, 0/1 or the text true/false)")


def _check_success(
    col: np.ndarray | None, missing: np.ndarray, n: int
) -> tuple[np.ndarray, _Reasons]:
    reasons = _Reasons(n)
    reasons[missing] = "is required"
    out = np.zeros(n, dtype=bool)
    present = ~missing
    if col is None or not present.any():
        return out, reasons
    if col.dtype.kind == "b":
        out[present] = col[present]
        return out, reasons
    if col.dtype.kind in "iuf":
        good = (col == 0) | (col == 1)
        reasons[present & ~good] = "must be a boolean (true/false, 0/1 or the text true/false)"
        out[present & good] = col[present & good] == 1
        return out, reasons
    if pd.api.types.infer_dtype(col[present], skipna=False) == "boolean":
        out[present] = col[present].astype(bool)
        return out, reasons
    obj = np.zeros(n, dtype=object)
    got = _per_value(col, np.flatnonzero(present), _to_bool, obj)
    reasons.absorb(got)
    ok = present & ~reasons.bad
    out[ok] = obj[ok].astype(bool)
    return out, reasons


def _first_of_each(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of ``keys`` by distinct value, and the position of each value's first row."""
    codes, uniques = pd.factorize(keys)
    first = np.full(len(uniques), len(keys), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(keys)))
    return codes, first


def _check_parameters(
    col: np.ndarray | None, missing: np.ndarray, n: int
) -> tuple[np.ndarray, _Reasons, dict[str, str], np.ndarray]:
    """Hashes per row, reasons, canonical JSON by hash, the normalised dict per row."""
    reasons = _Reasons(n)
    reasons[missing] = "is required"
    hashes = np.full(n, None, dtype=object)
    canon: dict[str, str] = {}
    parsed: dict[str, Any] = {}
    rows_dicts = np.full(n, None, dtype=object)
    present = np.flatnonzero(~missing)
    if col is None or len(present) == 0:
        return hashes, reasons, canon, rows_dicts
    if col.dtype != object:
        reasons[present] = "must be a JSON object"
        return hashes, reasons, canon, rows_dicts
    values = col[present]
    if pd.api.types.infer_dtype(values, skipna=False) == "string":
        codes, uniques = pd.factorize(values)  # JSON text: once per distinct text
        distinct = list(uniques)
    else:  # objects: once per distinct object (the same dict shared by many records)
        ids = np.fromiter(map(id, values), dtype=np.int64, count=len(values))
        codes, first = _first_of_each(ids)
        distinct = values[first].tolist()
    digests = np.full(len(distinct), None, dtype=object)
    why = np.full(len(distinct), None, dtype=object)
    dicts = np.full(len(distinct), None, dtype=object)
    for k, value in enumerate(distinct):
        try:
            text = _canonical(value)
        except _Bad as exc:
            why[k] = str(exc)
            continue
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        digests[k] = digest
        if digest not in canon:
            canon[digest] = text
            parsed[digest] = json.loads(text)
        dicts[k] = parsed[digest]
    hashes[present] = digests[codes]
    rows_dicts[present] = dicts[codes]
    reasons.spread(why, codes, present)
    return hashes, reasons, canon, rows_dicts


# -- the batch -------------------------------------------------------------------------------


def _columns_of(
    records: Any,
) -> tuple[int, dict[str, np.ndarray | None], np.ndarray, dict[str, np.ndarray]]:
    """Row count, one array per known column (None when absent), the non-mapping rows and
    the missing-value masks already known (of extension-dtype frame columns)."""
    if isinstance(records, pd.DataFrame):
        frame = records
    elif type(records).__module__.startswith("pyarrow"):
        frame = records.to_pandas()
    else:
        if isinstance(records, Mapping | str | bytes) or not isinstance(records, Sequence):
            raise InputError(
                "records must be a sequence of mappings, a pandas DataFrame or a pyarrow "
                f"Table, got {type(records).__name__}"
            )
        n = len(records)
        if n > MAX_BATCH_ROWS:
            raise InputError(_too_many(n))
        not_mapping = np.array(
            [not (type(r) is dict or isinstance(r, Mapping)) for r in records], dtype=bool
        )
        items = (
            [r if not bad else {} for r, bad in zip(records, not_mapping, strict=True)]
            if not_mapping.any()
            else records
        )
        cols: dict[str, np.ndarray | None] = {}
        for c in COLUMNS:
            cols[c] = np.fromiter((r.get(c) for r in items), dtype=object, count=n)
        return n, cols, not_mapping, {}
    n = len(frame)
    known: dict[str, np.ndarray] = {}
    if n > MAX_BATCH_ROWS:
        raise InputError(_too_many(n))
    cols = {}
    for c in COLUMNS:
        if c not in frame.columns:
            cols[c] = None
            continue
        series = frame[c]
        if isinstance(series, pd.DataFrame):
            raise InputError(f"column {c!r} appears more than once; give each column once")
        dtype = series.dtype
        if isinstance(dtype, pd.DatetimeTZDtype):
            cols[c] = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        elif isinstance(dtype, np.dtype) and dtype.kind in "iufbM":
            cols[c] = series.to_numpy()
        elif pd.api.types.is_bool_dtype(dtype) and not series.isna().any():
            cols[c] = series.to_numpy(dtype=bool)
        elif pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
            cols[c] = series.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            if isinstance(dtype, pd.StringDtype):
                known[c] = series.isna().to_numpy(dtype=bool)
            cols[c] = series.to_numpy(dtype=object, na_value=None)
    return n, cols, np.zeros(n, dtype=bool), known


def _too_many(n: int) -> str:
    return f"a batch of {n} records is more than MAX_BATCH_ROWS={MAX_BATCH_ROWS}; split it"


def validate(records: Any, *, now: datetime | float | None = None) -> Validated:
    """Validate a batch: keep the good records, report each bad one with its index.

    Args:
        records: A sequence of mappings, a pandas DataFrame or a pyarrow Table with the
            columns of :data:`COLUMNS` (``parameter_hash`` optional and checked).
        now: The present, for the "no later than one day from now" bound: a datetime or
            epoch seconds (default: the system clock).

    Returns:
        A :class:`Validated`; duplicate execution ids among the good records keep the first
        and reject the later ones with ``"duplicate execution_id in batch"``.

    Raises:
        InputError: ``records`` is none of the accepted types, or holds more than
            :data:`MAX_BATCH_ROWS` records.
    """
    if now is None:
        now_us = int(time.time() * 1e6)
    elif isinstance(now, datetime):
        now_us = _to_us(now)
    else:
        now_us = round(float(now) * 1e6)
    n, cols, not_mapping, missing = _columns_of(records)
    for c in COLUMNS:
        if c not in missing:
            col = cols[c]
            missing[c] = np.ones(n, dtype=bool) if col is None else _missing_mask(col)
    checked: dict[str, tuple[np.ndarray, _Reasons]] = {}
    text = _check_text
    checked["execution_id"] = _check_execution_ids(cols["execution_id"], missing["execution_id"], n)
    checked["timestamp"] = _check_timestamps(cols["timestamp"], missing["timestamp"], n, now_us)
    task_rule = _text_rule(1, 64, pattern=_TASK_TYPE)
    checked["task_type"] = text(cols["task_type"], missing["task_type"], n, task_rule, default=None)
    checked["model"] = text(cols["model"], missing["model"], n, _text_rule(1, 128), default=None)
    checked["provider"] = text(
        cols["provider"], missing["provider"], n, _text_rule(0, 64), default="unknown"
    )
    for c in ("user_id", "session_id"):
        checked[c] = text(cols[c], missing[c], n, _text_rule(0, 128), default="")
    hashes, why, canon, dicts = _check_parameters(cols["parameters"], missing["parameters"], n)
    checked["parameters"] = (dicts, why)
    given_hash = cols["parameter_hash"]
    hash_reasons = _Reasons(n)
    if given_hash is not None:
        for i in np.flatnonzero(~missing["parameter_hash"]):
            if hashes[i] is not None and given_hash[i] != hashes[i]:
                hash_reasons[i] = (
                    "does not match the SHA-256 of the canonical parameters; it is computed, "
                    "so omit it"
                )
    checked["parameter_hash"] = (hashes, hash_reasons)
    for c in ("prompt_tokens", "completion_tokens"):
        checked[c] = _check_numbers(
            cols[c], missing[c], n, lo=0, hi=10_000_000, integer=True, default=0.0
        )
    checked["latency_ms"] = _check_numbers(
        cols["latency_ms"], missing["latency_ms"], n, lo=0, hi=3_600_000, default=None
    )
    checked["cost"] = _check_numbers(
        cols["cost"], missing["cost"], n, lo=0, hi=1_000_000, default=0.0
    )
    checked["success"] = _check_success(cols["success"], missing["success"], n)
    checked["error_class"] = text(
        cols["error_class"], missing["error_class"], n, _text_rule(0, 64), default=""
    )
    checked["quality"] = _check_numbers(
        cols["quality"], missing["quality"], n, lo=0, hi=1, default=math.nan
    )
    checked["user_satisfaction"] = _check_numbers(
        cols["user_satisfaction"], missing["user_satisfaction"], n, lo=0, hi=5, default=math.nan
    )
    checked["complexity"] = text(
        cols["complexity"], missing["complexity"], n, _complexity_rule, default=""
    )

    failed_field = np.full(n, None, dtype=object)
    failed_reason = np.full(n, None, dtype=object)
    failed_field[not_mapping] = "record"
    failed_reason[not_mapping] = "must be an object (a mapping of column to value)"
    ok = ~not_mapping
    for c in COLUMNS:
        reasons = checked[c][1]
        if reasons.text is None:
            continue
        new = ok & reasons.bad
        failed_field[new] = c
        failed_reason[new] = reasons.text[new]
        ok &= ~new
    ids = checked["execution_id"][0]
    if ok.any():
        rows = np.flatnonzero(ok)
        dup = pd.Series(ids[rows], dtype=object).duplicated(keep="first").to_numpy()
        if dup.any():
            failed_field[rows[dup]] = "execution_id"
            failed_reason[rows[dup]] = "duplicate execution_id in batch"
            ok[rows[dup]] = False
    rows = np.flatnonzero(ok)
    everything = len(rows) == n
    index = pd.RangeIndex(n) if everything else pd.Index(rows, dtype=np.int64)
    series = []
    for c in COLUMNS:
        values = checked[c][0] if everything else checked[c][0][rows]
        if c in ("prompt_tokens", "completion_tokens"):
            values = values.astype(np.int64)
        series.append(pd.Series(values, index=index, dtype=values.dtype, name=c))
    # concat keeps one block per column; a DataFrame from a dict would copy them into one
    frame = pd.concat(series, axis=1) if series[0].size else _empty_frame()
    bad = np.flatnonzero(~ok)
    rejected = [Rejection(int(i), str(failed_field[i]), str(failed_reason[i])) for i in bad]
    used = set(hashes[rows].tolist())
    return Validated(frame, rejected, {h: canon[h] for h in used})


def _empty_frame() -> pd.DataFrame:
    dtypes: dict[str, Any] = {
        c: np.int64 for c in ("timestamp", "prompt_tokens", "completion_tokens")
    }
    dtypes |= {c: np.float64 for c in ("latency_ms", "cost", "quality", "user_satisfaction")}
    dtypes["success"] = np.bool_
    return pd.DataFrame(
        {c: pd.Series([], dtype=dtypes.get(c, object)) for c in COLUMNS},
        index=pd.Index([], dtype=np.int64),
    )


def _complexity_rule(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(f"must be a string, got {_kind(value)}")
    if value not in COMPLEXITIES:
        raise _Bad("must be one of simple, medium, complex or empty")
    return str(value)
