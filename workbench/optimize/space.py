"""Search spaces: parameter types, linear constraints, conditional parameters and encoding.

A :class:`SearchSpace` maps a configuration (a dict of parameter values) to a point of the
unit cube ``[0, 1]^D`` that the GP models and the acquisition optimisers work in, and back:

- ``Real(lo, hi)``: one column, ``(x - lo) / (hi - lo)``; with ``log=True`` the same on
  ``log(x)``.
- ``Int(lo, hi)``: one column like ``Real``; decoding rounds to the nearest integer and the
  encoded point is re-snapped to that integer, so the GP only ever sees feasible points.
- ``Categorical(choices)``: one-hot columns (one per choice). One-hot keeps every choice at
  the same distance from every other under an ARD kernel; decoding takes the arg-max.
- ``Fixed(value)``: no column; always present in decoded configurations.

Conditional parameters (``Real(0, 2, active_if={"model": ["large"]})``) are present in a
configuration only when their parent categorical takes one of the listed values. While
inactive, their columns hold a neutral value (0.5 for numbers, all zeros for one-hot), so two
configurations that differ only in an inactive parameter encode to the same point.

Linear constraints (:class:`LinearConstraint`) act on linear ``Real``/``Int`` parameters in
their own units and are translated to the unit cube for BoTorch's ``inequality_constraints``.

Only numpy is used here (no torch), so ``import workbench.optimize`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.errors import InputError

__all__ = [
    "Categorical",
    "Fixed",
    "Int",
    "LinearConstraint",
    "Param",
    "Real",
    "SearchSpace",
    "param_from_dict",
]

_NEUTRAL = 0.5


def _active_if(raw: Mapping[str, Iterable[Any]] | None) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not raw:
        return ()
    return tuple((str(k), tuple(v)) for k, v in sorted(raw.items()))


@dataclass(frozen=True)
class Real:
    """A continuous parameter on ``[low, high]``.

    Attributes:
        low: Lower bound (inclusive).
        high: Upper bound (inclusive), greater than ``low``.
        log: Search on a log scale (``low`` must be positive).
        active_if: Parent parameter name -> values of the parent for which this one is active.
    """

    low: float
    high: float
    log: bool = False
    active_if: Any = None

    def __post_init__(self) -> None:
        low, high = _float_bounds(self)
        _check_bounds(self, low, high)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "active_if", _active_if(self.active_if))

    @property
    def width(self) -> int:
        return 1

    def encode(self, value: Any) -> list[float]:
        return [_unit(self, float(value))]

    def decode(self, cols: np.ndarray) -> float:
        return float(_from_unit(self, float(cols[0])))

    def validate(self, name: str, value: Any) -> float:
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise InputError(
                f"parameter {name!r}={value!r} is not a number; use a value in "
                f"[{self.low}, {self.high}]",
                details={"field": name},
            ) from None
        if not (
            self.low - 1e-9 * max(1.0, abs(self.low))
            <= x
            <= self.high + 1e-9 * max(1.0, abs(self.high))
        ):
            raise InputError(
                f"parameter {name!r}={value!r} is outside [{self.low}, {self.high}]",
                details={"field": name},
            )
        return min(max(x, self.low), self.high)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "real",
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "active_if": _active_dict(self.active_if),
        }


@dataclass(frozen=True)
class Int:
    """An integer parameter on ``[low, high]`` (both inclusive).

    Attributes:
        low: Lower bound.
        high: Upper bound, greater than ``low``.
        log: Search on a log scale (``low`` must be positive).
        active_if: Parent parameter name -> values of the parent for which this one is active.
    """

    low: int
    high: int
    log: bool = False
    active_if: Any = None

    def __post_init__(self) -> None:
        low, high = _float_bounds(self)
        _check_bounds(self, low, high)
        if int(low) != low or int(high) != high:
            raise InputError(f"Int bounds must be integers, got [{self.low}, {self.high}]")
        object.__setattr__(self, "low", int(self.low))
        object.__setattr__(self, "high", int(self.high))
        object.__setattr__(self, "active_if", _active_if(self.active_if))

    @property
    def width(self) -> int:
        return 1

    def encode(self, value: Any) -> list[float]:
        return [_unit(self, float(value))]

    def decode(self, cols: np.ndarray) -> int:
        x = round(_from_unit(self, float(cols[0])))
        return min(max(x, self.low), self.high)

    def validate(self, name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InputError(
                f"parameter {name!r}={value!r} is not an integer; use one in "
                f"[{self.low}, {self.high}]",
                details={"field": name},
            )
        if float(value) != round(float(value)):
            raise InputError(
                f"parameter {name!r}={value!r} is not an integer", details={"field": name}
            )
        x = round(float(value))
        if not self.low <= x <= self.high:
            raise InputError(
                f"parameter {name!r}={value!r} is outside [{self.low}, {self.high}]",
                details={"field": name},
            )
        return x

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "int",
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "active_if": _active_dict(self.active_if),
        }


@dataclass(frozen=True)
class Categorical:
    """An unordered choice among ``choices`` (strings, numbers or booleans).

    Attributes:
        choices: The distinct values, at least one.
        active_if: Parent parameter name -> values of the parent for which this one is active.
    """

    choices: Sequence[Any]
    active_if: Any = None

    def __post_init__(self) -> None:
        choices = tuple(self.choices)
        if not choices:
            raise InputError("Categorical needs at least one choice")
        if len(set(map(repr, choices))) != len(choices):
            raise InputError(f"Categorical choices must be distinct, got {list(choices)}")
        for c in choices:
            if not isinstance(c, (str, int, float, bool)):
                raise InputError(f"Categorical choice {c!r} must be a str, int, float or bool")
        object.__setattr__(self, "choices", choices)
        object.__setattr__(self, "active_if", _active_if(self.active_if))

    @property
    def width(self) -> int:
        return len(self.choices)

    def index(self, value: Any) -> int:
        for i, c in enumerate(self.choices):
            if c == value and isinstance(c, bool) == isinstance(value, (bool, np.bool_)):
                return i
        raise KeyError(value)

    def encode(self, value: Any) -> list[float]:
        cols = [0.0] * len(self.choices)
        cols[self.index(value)] = 1.0
        return cols

    def decode(self, cols: np.ndarray) -> Any:
        return self.choices[int(np.argmax(cols))]

    def validate(self, name: str, value: Any) -> Any:
        try:
            return self.choices[self.index(value)]
        except KeyError:
            raise InputError(
                f"parameter {name!r}={value!r} is not one of {list(self.choices)}",
                details={"field": name},
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "categorical",
            "choices": list(self.choices),
            "active_if": _active_dict(self.active_if),
        }


@dataclass(frozen=True)
class Fixed:
    """A parameter held at one value (kept in every configuration, not searched).

    Attributes:
        value: The value (str, number or bool).
    """

    value: Any
    active_if: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "active_if", _active_if(self.active_if))

    @property
    def width(self) -> int:
        return 0

    def encode(self, value: Any) -> list[float]:
        return []

    def decode(self, cols: np.ndarray) -> Any:
        return self.value

    def validate(self, name: str, value: Any) -> Any:
        if value != self.value:
            raise InputError(
                f"parameter {name!r} is fixed at {self.value!r}, got {value!r}",
                details={"field": name},
            )
        return self.value

    def to_dict(self) -> dict[str, Any]:
        return {"type": "fixed", "value": self.value, "active_if": _active_dict(self.active_if)}


Param = Real | Int | Categorical | Fixed


#: The keys each parameter type accepts in :func:`param_from_dict`.
_KEYS = {
    "real": ("type", "low", "high", "log", "active_if"),
    "int": ("type", "low", "high", "log", "active_if"),
    "categorical": ("type", "choices", "active_if"),
    "fixed": ("type", "value", "active_if"),
}
_SCALARS = (str, int, float, bool)


def _bad(name: str, key: str, message: str) -> InputError:
    field = f"{name}.{key}" if key else name
    return InputError(f"parameter {name!r}: {message}", details={"field": field})


def _number(name: str, data: Mapping[str, Any], key: str, *, integer: bool = False) -> Any:
    if key not in data:
        raise _bad(name, key, f"{key!r} is required")
    value = data[key]
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _bad(name, key, f"{key}={value!r} must be {kind}")
    try:
        as_float = float(value)
    except OverflowError:
        as_float = math.inf
    if not math.isfinite(as_float):
        raise _bad(name, key, f"{key}={value!r} must be a finite number")
    if integer and as_float != round(as_float):
        raise _bad(name, key, f"{key}={value!r} must be an integer")
    if not integer:
        return as_float
    return int(value) if isinstance(value, (int, np.integer)) else round(as_float)


def _active_from(name: str, raw: Any) -> dict[str, list[Any]] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str)
        and isinstance(v, (list, tuple))
        and all(isinstance(c, _SCALARS) for c in v)
        for k, v in raw.items()
    ):
        raise _bad(
            name, "active_if", f"active_if={raw!r} must map a parent name to a list of its values"
        )
    return {k: list(v) for k, v in raw.items()}


def param_from_dict(data: Mapping[str, Any], name: str = "parameter") -> Param:
    """Rebuild a parameter from :meth:`to_dict` output (used by storage and the HTTP API).

    Args:
        data: ``{"type": "real" | "int" | "categorical" | "fixed", ...}`` with the keys of
            that type (``low``, ``high``, ``log``; ``choices``; ``value``; and ``active_if``).
        name: The parameter's name, for error messages.

    Raises:
        InputError: a malformed definition; ``details["field"]`` is ``"<name>.<key>"``.
    """
    if not isinstance(data, Mapping):
        raise _bad(name, "", f"the definition must be an object with a 'type', got {data!r}")
    kind = data.get("type")
    if kind not in _KEYS:
        raise _bad(name, "type", f"unknown type {kind!r}; use real, int, categorical or fixed")
    unknown = sorted(str(k) for k in data if k not in _KEYS[kind])
    if unknown:
        raise _bad(
            name,
            unknown[0],
            f"unknown key(s) {unknown} for a {kind} parameter; known: {', '.join(_KEYS[kind])}",
        )
    active = _active_from(name, data.get("active_if"))
    try:
        if kind in ("real", "int"):
            integer = kind == "int"
            low = _number(name, data, "low", integer=integer)
            high = _number(name, data, "high", integer=integer)
            log = data.get("log", False)
            if not isinstance(log, bool):
                raise _bad(name, "log", f"log={log!r} must be true or false")
            if not math.isfinite(high - low):
                raise _bad(name, "high", f"the range [{low}, {high}] is too wide to encode")
            cls = Int if integer else Real
            return cls(low, high, log=log, active_if=active)
        if kind == "categorical":
            choices = data.get("choices")
            if not isinstance(choices, (list, tuple)) or not all(
                isinstance(c, _SCALARS) for c in choices
            ):
                raise _bad(
                    name,
                    "choices",
                    f"choices={choices!r} must be a list of strings, numbers or booleans",
                )
            return Categorical(choices, active_if=active)
        if "value" not in data or not isinstance(data["value"], _SCALARS):
            raise _bad(
                name, "value", f"value={data.get('value')!r} must be a string, number or boolean"
            )
        return Fixed(data["value"], active_if=active)
    except InputError as exc:
        if isinstance(exc.details, dict) and "field" in exc.details:
            raise
        raise InputError(f"parameter {name!r}: {exc.message}", details={"field": name}) from None


@dataclass(frozen=True)
class LinearConstraint:
    """``sum(coefficients[name] * params[name]) <op> bound`` over linear Real/Int parameters.

    Attributes:
        coefficients: Parameter name -> coefficient, in the parameters' own units.
        op: ``"<="`` or ``">="``.
        bound: Right-hand side.
    """

    coefficients: Mapping[str, float]
    op: str
    bound: float

    def __post_init__(self) -> None:
        if self.op not in ("<=", ">="):
            raise InputError(f"LinearConstraint op must be '<=' or '>=', got {self.op!r}")
        if not self.coefficients:
            raise InputError("LinearConstraint needs at least one coefficient")
        object.__setattr__(
            self, "coefficients", {k: float(v) for k, v in self.coefficients.items()}
        )
        object.__setattr__(self, "bound", float(self.bound))

    def satisfied(self, params: Mapping[str, Any], tol: float = 1e-9) -> bool:
        lhs = sum(c * float(params[k]) for k, c in self.coefficients.items())
        scale = tol * max(1.0, abs(self.bound))
        return lhs <= self.bound + scale if self.op == "<=" else lhs >= self.bound - scale

    def to_dict(self) -> dict[str, Any]:
        return {"coefficients": dict(self.coefficients), "op": self.op, "bound": self.bound}


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of named parameters with optional linear constraints.

    Attributes:
        params: Parameter name -> :data:`Param` (order is kept: it fixes the encoding).
        constraints: Linear constraints over linear numeric parameters.
    """

    params: Mapping[str, Param]
    constraints: tuple[LinearConstraint, ...] = ()
    _slices: dict[str, slice] = field(default_factory=dict, init=False, repr=False, compare=False)
    _all_real: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.params:
            raise InputError("a search space needs at least one parameter")
        params = dict(self.params)
        for name, p in params.items():
            if not isinstance(p, (Real, Int, Categorical, Fixed)):
                raise InputError(
                    f"parameter {name!r} must be Real, Int, Categorical or Fixed, got {p!r}"
                )
            for parent, values in p.active_if:
                parent_p = params.get(parent)
                if not isinstance(parent_p, (Categorical, Fixed)):
                    raise InputError(
                        f"parameter {name!r} is conditional on {parent!r}, which must be a "
                        "Categorical or Fixed parameter of the space"
                    )
                if list(params).index(parent) > list(params).index(name):
                    raise InputError(f"parent {parent!r} must come before {name!r}")
                for v in values:
                    if isinstance(parent_p, Categorical):
                        parent_p.validate(parent, v)
        constraints = tuple(self.constraints)
        for c in constraints:
            for k in c.coefficients:
                cp = params.get(k)
                if not isinstance(cp, (Real, Int)) or cp.log or cp.active_if:
                    raise InputError(
                        f"linear constraint uses {k!r}, which must be an unconditional linear "
                        "Real or Int parameter of the space"
                    )
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "constraints", constraints)
        start = 0
        for name, p in params.items():
            self._slices[name] = slice(start, start + p.width)
            start += p.width
        if start == 0:
            raise InputError("a search space needs at least one non-Fixed parameter")
        object.__setattr__(
            self,
            "_all_real",
            all(isinstance(p, (Real, Fixed)) and not p.active_if for p in params.values()),
        )

    # ----- shape -------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Number of columns of the encoded unit cube."""
        return sum(p.width for p in self.params.values())

    @property
    def names(self) -> list[str]:
        return list(self.params)

    def discrete_columns(self) -> list[int]:
        """Columns of Int and Categorical parameters (held fixed by continuous optimisers)."""
        out: list[int] = []
        for name, p in self.params.items():
            if isinstance(p, (Int, Categorical)):
                s = self._slices[name]
                out.extend(range(s.start, s.stop))
        return out

    def continuous_columns(self) -> list[int]:
        out: list[int] = []
        for name, p in self.params.items():
            if isinstance(p, Real):
                out.append(self._slices[name].start)
        return out

    @property
    def is_mixed(self) -> bool:
        return bool(self.discrete_columns())

    def n_configurations(self) -> float:
        """Number of distinct configurations (``inf`` when any Real is active)."""
        total = 1.0
        for p in self.params.values():
            if isinstance(p, Real):
                return math.inf
            if isinstance(p, Int):
                total *= p.high - p.low + 1
            elif isinstance(p, Categorical):
                total *= len(p.choices)
        return total

    # ----- activity ------------------------------------------------------------------------
    def is_active(self, name: str, params: Mapping[str, Any]) -> bool:
        p = self.params[name]
        for parent, values in p.active_if:
            if parent not in params or params[parent] not in values:
                return False
        return True

    # ----- validation ----------------------------------------------------------------------
    def validate(self, params: Mapping[str, Any], *, fill_fixed: bool = True) -> dict[str, Any]:
        """Check a configuration and return it normalised (Fixed filled, inactive dropped).

        Raises:
            InputError: an unknown name, a missing active parameter, a value of the wrong
                type or out of bounds, or a violated constraint.
        """
        unknown = set(params) - set(self.params)
        if unknown:
            raise InputError(
                f"unknown parameter(s) {sorted(unknown)}; the space has {self.names}",
                details={"field": sorted(unknown)[0]},
            )
        out: dict[str, Any] = {}
        for name, p in self.params.items():
            if not self.is_active(name, out):
                continue
            if name not in params:
                if isinstance(p, Fixed) and fill_fixed:
                    out[name] = p.value
                    continue
                raise InputError(f"parameter {name!r} is missing", details={"field": name})
            out[name] = p.validate(name, params[name])
        for c in self.constraints:
            if not c.satisfied(out):
                raise InputError(
                    f"configuration violates constraint {c.to_dict()}",
                    details={"field": next(iter(c.coefficients))},
                )
        return out

    def feasible(self, params: Mapping[str, Any]) -> bool:
        return all(c.satisfied(params) for c in self.constraints)

    # ----- encoding ------------------------------------------------------------------------
    def encode(self, params: Mapping[str, Any]) -> np.ndarray:
        """A validated configuration -> its point in ``[0, 1]^dim`` (shape ``(dim,)``)."""
        row = np.full(self.dim, 0.0)
        for name, p in self.params.items():
            s = self._slices[name]
            if s.stop == s.start:
                continue
            if name in params and self.is_active(name, params):
                row[s] = p.encode(params[name])
            else:
                row[s] = 0.0 if isinstance(p, Categorical) else _NEUTRAL
        return row

    def encode_many(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Shape ``(n, dim)``."""
        if not configs:
            return np.zeros((0, self.dim))
        return np.stack([self.encode(c) for c in configs])

    def decode(self, row: np.ndarray) -> dict[str, Any]:
        """A point of the unit cube -> the nearest configuration (rounded, arg-maxed)."""
        row = np.clip(np.asarray(row, dtype=float), 0.0, 1.0)
        out: dict[str, Any] = {}
        for name, p in self.params.items():
            if not self.is_active(name, out):
                continue
            out[name] = p.decode(row[self._slices[name]])
        return out

    def snap(self, points: np.ndarray) -> np.ndarray:
        """Project points onto the encodings of feasible-type configurations, shape kept."""
        pts = np.atleast_2d(np.asarray(points, dtype=float))
        if self._all_real:  # nothing to round: a clip is the projection
            return np.clip(pts, 0.0, 1.0).reshape(np.shape(points))
        return np.stack([self.encode(self.decode(r)) for r in pts]).reshape(np.shape(points))

    def constraints_unit(self) -> list[tuple[list[int], list[float], float]]:
        """The linear constraints in the unit cube as ``(columns, coefficients, rhs)``
        meaning ``sum(coef * u[col]) >= rhs`` (BoTorch's ``inequality_constraints``)."""
        out = []
        for c in self.constraints:
            cols, coefs = [], []
            rhs = c.bound
            sign = -1.0 if c.op == "<=" else 1.0  # turn "<=" into ">="
            for k, a in c.coefficients.items():
                p = self.params[k]
                assert isinstance(p, (Real, Int))
                width = float(p.high - p.low)
                cols.append(self._slices[k].start)
                coefs.append(sign * a * width)
                rhs -= a * float(p.low)
            out.append((cols, coefs, sign * rhs))
        return out

    def feasible_unit(self, points: np.ndarray, tol: float = 1e-9) -> np.ndarray:
        """Boolean mask of rows of ``points`` (shape ``(n, dim)``) meeting the constraints."""
        pts = np.atleast_2d(points)
        ok = np.ones(len(pts), dtype=bool)
        for cols, coefs, rhs in self.constraints_unit():
            ok &= pts[:, cols] @ np.asarray(coefs) >= rhs - tol
        return ok

    # ----- sampling ------------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator, *, max_tries: int = 50) -> np.ndarray:
        """``n`` uniformly random feasible points, snapped (shape ``(n, dim)``)."""
        got: list[np.ndarray] = []
        count = 0
        for _ in range(max_tries):
            raw = self.snap(rng.random((max(n, 16) * 2, self.dim)))
            raw = raw[self.feasible_unit(raw)]
            got.append(raw)
            count += len(raw)
            if count >= n:
                break
        pts = np.concatenate(got) if got else np.zeros((0, self.dim))
        if len(pts) < n:
            raise InputError("the linear constraints leave (almost) no feasible region")
        return pts[:n]

    # ----- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "params": {k: p.to_dict() for k, p in self.params.items()},
            "constraints": [c.to_dict() for c in self.constraints],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        """Rebuild a space from :meth:`to_dict` output.

        Raises:
            InputError: a malformed space; ``details["field"]`` names the parameter and key
                (``"x.low"``) or the constraint (``"constraints.0.bound"``).
        """
        raw = data.get("params") if isinstance(data, Mapping) else None
        if not isinstance(raw, Mapping):
            raise InputError(
                "malformed search space: 'params' must map parameter names to definitions",
                details={"field": "params"},
            )
        params = {str(k): param_from_dict(v, str(k)) for k, v in raw.items()}
        constraints = []
        for i, c in enumerate(data.get("constraints") or ()):
            where = f"constraints.{i}"
            if not isinstance(c, Mapping) or not {"coefficients", "op", "bound"} <= set(c):
                raise InputError(
                    f"linear constraint {i} must have 'coefficients', 'op' and 'bound'",
                    details={"field": where},
                )
            coefs, bound = c["coefficients"], c["bound"]
            if not isinstance(coefs, Mapping) or not all(_finite_number(v) for v in coefs.values()):
                raise InputError(
                    f"linear constraint {i}: coefficients must map names to finite numbers",
                    details={"field": f"{where}.coefficients"},
                )
            if not _finite_number(bound):
                raise InputError(
                    f"linear constraint {i}: bound={bound!r} must be a finite number",
                    details={"field": f"{where}.bound"},
                )
            try:
                constraints.append(LinearConstraint(coefs, c["op"], bound))
            except InputError as exc:
                raise InputError(exc.message, details={"field": f"{where}.op"}) from None
        return cls(params, tuple(constraints))

    @classmethod
    def coerce(
        cls, space: SearchSpace | Mapping[str, Param], constraints: Sequence[LinearConstraint] = ()
    ) -> SearchSpace:
        if isinstance(space, SearchSpace):
            if constraints:
                return cls(space.params, tuple(space.constraints) + tuple(constraints))
            return space
        return cls(dict(space), tuple(constraints))


def _finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _active_dict(active: tuple[tuple[str, tuple[Any, ...]], ...]) -> dict[str, list[Any]] | None:
    return {k: list(v) for k, v in active} or None


def _float_bounds(p: Real | Int) -> tuple[float, float]:
    try:
        return float(p.low), float(p.high)
    except (TypeError, ValueError, OverflowError):
        raise InputError(
            f"{type(p).__name__} bounds must be numbers, got [{p.low!r}, {p.high!r}]"
        ) from None


def _check_bounds(p: Real | Int, low: float, high: float) -> None:
    if not (math.isfinite(low) and math.isfinite(high) and math.isfinite(high - low)) or not (
        low < high
    ):
        raise InputError(f"{type(p).__name__} needs finite low < high, got [{low}, {high}]")
    if p.log and low <= 0:
        raise InputError(f"{type(p).__name__}(log=True) needs low > 0, got {low}")


def _unit(p: Real | Int, x: float) -> float:
    if p.log:
        return (math.log(x) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
    return (x - p.low) / (p.high - p.low)


def _from_unit(p: Real | Int, u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    if p.log:
        return math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
    return p.low + u * (p.high - p.low)
