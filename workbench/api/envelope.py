"""The platform's JSON envelopes and a JSON encoder for the data workbench returns.

Success: ``{"success": true, "data": ..., "metadata": {"requestId", "timestamp", "version",
...meta}}``. Error: ``{"success": false, "error": {"code", "message", "details"},
"metadata": {...}}``. ``version`` is the platform's API version (``"1.0.0"``), not the
package's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["API_VERSION", "dumps", "error_body", "success_body", "to_jsonable"]

API_VERSION = "1.0.0"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def metadata(request_id: str, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"requestId": request_id, "timestamp": _now(), "version": API_VERSION}
    if meta:
        out.update(meta)
    return out


def success_body(data: Any, request_id: str, meta: Mapping[str, Any] | None = None) -> dict:
    return {"success": True, "data": data, "metadata": metadata(request_id, meta)}


def error_body(code: str, message: str, request_id: str, details: Any = None) -> dict:
    return {
        "success": False,
        "error": {"code": code, "message": message, "details": details},
        "metadata": metadata(request_id),
    }


def to_jsonable(obj: Any) -> Any:
    """Convert the types workbench returns (numpy, dataclasses, pydantic, paths) to JSON types.

    Non-finite floats become ``None``: JSON has no NaN, and the platform reports unknown
    values as null.
    """
    if obj is None or isinstance(obj, str | bool | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict) and not isinstance(obj, type):
        return to_jsonable(to_dict())
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump) and not isinstance(obj, type):
        return to_jsonable(model_dump(mode="json", by_alias=True))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, Path):
        return str(obj)
    tolist = getattr(obj, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return to_jsonable(tolist())
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def _default(obj: Any) -> Any:
    converted = to_jsonable(obj)
    if converted is obj:
        raise TypeError(f"cannot encode {type(obj).__name__} as JSON")
    return converted


def dumps(obj: Any) -> str:
    """Compact JSON text of ``obj``; non-JSON types go through :func:`to_jsonable`."""
    try:
        # Fast path: plain data encodes directly; the default hook only sees exotic objects.
        return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_default)
    except ValueError:  # a NaN or infinity somewhere: normalise the whole tree once
        return json.dumps(to_jsonable(obj), separators=(",", ":"), allow_nan=False)
