"""Search spaces: validation, encoding round trips, conditions, constraints, sampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import InputError
from workbench.optimize import Categorical, Fixed, Int, LinearConstraint, Real, SearchSpace


def mixed_space() -> SearchSpace:
    return SearchSpace(
        {
            "x": Real(-2.0, 3.0),
            "lr": Real(1e-4, 1e-1, log=True),
            "n": Int(1, 8),
            "tokens": Int(64, 4096, log=True),
            "model": Categorical(["a", "b", "c"]),
            "beta": Real(0.0, 1.0, active_if={"model": ["b"]}),
            "const": Fixed("v1"),
        }
    )


def test_dim_and_columns() -> None:
    s = mixed_space()
    assert s.dim == 1 + 1 + 1 + 1 + 3 + 1
    assert s.discrete_columns() == [2, 3, 4, 5, 6]
    assert s.is_mixed


@given(
    x=st.floats(-2, 3),
    lr=st.floats(1e-4, 1e-1),
    n=st.integers(1, 8),
    tokens=st.integers(64, 4096),
    model=st.sampled_from(["a", "b", "c"]),
    beta=st.floats(0, 1),
)
@settings(max_examples=60, deadline=None)
def test_encode_decode_round_trip(x, lr, n, tokens, model, beta) -> None:
    s = mixed_space()
    params = {"x": x, "lr": lr, "n": n, "tokens": tokens, "model": model, "beta": beta}
    if model != "b":
        params.pop("beta")
    clean = s.validate(params)
    back = s.decode(s.encode(clean))
    assert back["model"] == model and back["n"] == n and back["tokens"] == tokens
    assert back["x"] == pytest.approx(x, abs=1e-9)
    assert back["lr"] == pytest.approx(lr, rel=1e-9)
    assert ("beta" in back) == (model == "b")
    assert back["const"] == "v1"


def test_inactive_parameters_encode_the_same() -> None:
    s = mixed_space()
    base = {"x": 0.0, "lr": 0.01, "n": 2, "tokens": 100, "model": "a"}
    assert np.array_equal(s.encode(base), s.encode({**base}))
    with pytest.raises(InputError, match="beta"):
        s.validate({**base, "model": "b"})  # beta missing while active


@pytest.mark.parametrize(
    "params, field",
    [
        ({"x": 5.0}, "x"),
        ({"n": 2.5}, "n"),
        ({"model": "z"}, "model"),
        ({"x": "abc"}, "x"),
        ({"const": "other"}, "const"),
    ],
)
def test_bad_values_name_the_field(params, field) -> None:
    s = mixed_space()
    good = {"x": 0.0, "lr": 0.01, "n": 2, "tokens": 100, "model": "a"}
    with pytest.raises(InputError) as info:
        s.validate({**good, **params})
    assert info.value.details["field"] == field


def test_unknown_parameter_rejected() -> None:
    with pytest.raises(InputError, match="unknown parameter"):
        mixed_space().validate({"zzz": 1})


def test_bad_definitions() -> None:
    with pytest.raises(InputError):
        Real(1, 1)
    with pytest.raises(InputError):
        Real(0, 1, log=True)
    with pytest.raises(InputError):
        Categorical(["a", "a"])
    with pytest.raises(InputError):
        SearchSpace({"x": Real(0, 1, active_if={"m": ["a"]})})
    with pytest.raises(InputError):
        SearchSpace({"x": Real(0, 1, log=False)}, (LinearConstraint({"y": 1}, "<=", 1),))


def test_linear_constraint_in_unit_cube_matches_raw_units() -> None:
    s = SearchSpace(
        {"a": Real(0, 10), "b": Int(-5, 5)}, (LinearConstraint({"a": 1, "b": 2}, "<=", 6),)
    )
    rng = np.random.default_rng(0)
    pts = s.sample(200, rng)
    for row in pts:
        p = s.decode(row)
        assert p["a"] + 2 * p["b"] <= 6 + 1e-9
    raw = s.snap(rng.random((500, 2)))
    mask = s.feasible_unit(raw)
    for row, ok in zip(raw, mask, strict=True):
        p = s.decode(row)
        assert ok == (p["a"] + 2 * p["b"] <= 6 + 1e-9)


def test_serialisation_round_trip() -> None:
    s = SearchSpace(mixed_space().params, (LinearConstraint({"x": 1.0, "n": 1.0}, ">=", 0),))
    assert SearchSpace.from_dict(s.to_dict()) == s


def test_snap_is_idempotent() -> None:
    s = mixed_space()
    pts = s.snap(np.random.default_rng(1).random((50, s.dim)))
    assert np.allclose(s.snap(pts), pts)


def test_categorical_bool_and_int_distinct() -> None:
    c = Categorical([True, 1, "1"])
    assert c.index(True) == 0 and c.index(1) == 1 and c.index("1") == 2


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        ({"type": "real", "low": "abc", "high": 1}, "x.low"),
        ({"type": "real", "low": [0], "high": 1}, "x.low"),
        ({"type": "real", "low": 0}, "x.high"),
        ({"type": "real", "low": 0, "high": 10**400}, "x.high"),
        ({"type": "real", "low": -1e308, "high": 1e308}, "x.high"),
        ({"type": "real", "low": 0, "high": 1, "log": "yes"}, "x.log"),
        ({"type": "real", "low": 0, "high": 1, "lo": 0}, "x.lo"),
        ({"type": "int", "low": True, "high": 4}, "x.low"),
        ({"type": "int", "low": 0, "high": 10**400}, "x.high"),
        ({"type": "categorical", "choices": 5}, "x.choices"),
        ({"type": "categorical", "choices": "abc"}, "x.choices"),
        ({"type": "categorical", "choices": [[1]]}, "x.choices"),
        ({"type": "fixed", "value": {"a": 1}}, "x.value"),
        ({"type": "fixed"}, "x.value"),
        ({"type": "real", "low": 0, "high": 1, "active_if": "m"}, "x.active_if"),
        ({"type": "real", "low": 0, "high": 1, "active_if": {"m": 5}}, "x.active_if"),
        ({"type": "complex"}, "x.type"),
        ({"low": 0, "high": 1}, "x.type"),
        ("real", "x"),
    ],
)
def test_malformed_definitions_name_the_parameter_and_field(definition, field) -> None:
    with pytest.raises(InputError) as info:
        SearchSpace.from_dict({"params": {"x": definition}})
    assert info.value.details["field"] == field, info.value.message
    assert "'x'" in info.value.message


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"params": []},
        {"params": {"x": {"type": "real", "low": 0, "high": 1}}, "constraints": [{"op": "<="}]},
        {
            "params": {"x": {"type": "real", "low": 0, "high": 1}},
            "constraints": [{"coefficients": {"x": "a"}, "op": "<=", "bound": 1}],
        },
        {
            "params": {"x": {"type": "real", "low": 0, "high": 1}},
            "constraints": [{"coefficients": {"x": 1}, "op": "<", "bound": 1}],
        },
        {
            "params": {"x": {"type": "real", "low": 0, "high": 1}},
            "constraints": [{"coefficients": {"x": 1}, "op": "<=", "bound": float("nan")}],
        },
    ],
)
def test_malformed_spaces_are_input_errors(data) -> None:
    with pytest.raises(InputError):
        SearchSpace.from_dict(data)
