"""Persistence: versioned JSON files and Redis (real server); a restored study proposes the
same next point as the original."""

from __future__ import annotations

import json

import pytest

from workbench.errors import NotFoundError, StorageFormatError
from workbench.optimize import Categorical, Int, Optimizer, Real
from workbench.optimize.storage import FileStudyStore, RedisStudyStore, dumps, loads


def objective(p: dict) -> float:
    return (p["x"] - 0.4) ** 2 + 0.1 * p["n"] + (p["m"] == "b") * 0.2


def study(name: str = "s1") -> Optimizer:
    opt = Optimizer(
        {"x": Real(0, 1), "n": Int(1, 4), "m": Categorical(["a", "b"])},
        {"y": "minimize"},
        seed=11,
        name=name,
    )
    for _ in range(8):
        t = opt.ask()
        opt.tell(t, {"y": objective(t.params)})
    opt.ask()  # leave one pending
    return opt


def test_round_trip_resumes_with_the_same_next_point(tmp_path) -> None:
    original = study()
    path = tmp_path / "s1.json"
    original.save(path)
    restored = Optimizer.load(path)
    assert restored.to_dict() == original.to_dict()
    assert [t.status for t in restored.trials] == [t.status for t in original.trials]
    assert restored.ask().params == original.ask().params


def test_file_store(tmp_path) -> None:
    store = FileStudyStore(tmp_path)
    opt = study("alpha")
    store.save(opt)
    assert list(store.names()) == ["alpha"]
    assert store.load("alpha").to_dict() == opt.to_dict()
    assert store.delete("alpha") and not store.exists("alpha")
    with pytest.raises(NotFoundError):
        store.load("alpha")


def test_format_and_version_are_checked() -> None:
    data = json.loads(dumps(study()))
    data["version"] = 99
    with pytest.raises(StorageFormatError, match="version"):
        loads(json.dumps(data))
    with pytest.raises(StorageFormatError):
        loads(b"\x80not json")
    with pytest.raises(StorageFormatError):
        loads(json.dumps({"format": "pickle", "version": 1}))
    data["version"] = 1
    del data["study"]["space"]
    with pytest.raises(StorageFormatError):
        loads(json.dumps(data))


def test_redis_store_round_trip(redis_adapter) -> None:
    store = RedisStudyStore(redis_adapter)
    original = study("beta")
    store.save(original)
    assert list(store.names()) == ["beta"]
    restored = store.load("beta")
    assert restored.ask().params == original.ask().params
    assert store.delete("beta")
    with pytest.raises(NotFoundError):
        store.load("beta")


def test_redis_store_ttl(redis_adapter) -> None:
    store = RedisStudyStore(redis_adapter, ttl_s=30)
    store.save(study("gamma"))
    ttl = redis_adapter.ttl(store.key("gamma"))
    assert ttl is not None and 0 < ttl <= 30


@pytest.mark.parametrize(
    "name", ["", "a\x00b", "\U0001f600" * 100, "a/b", "..", ".hidden", "a b", "x" * 129, "é"]
)
def test_study_names_are_checked_before_touching_the_store(tmp_path, name) -> None:
    from workbench.errors import InputError

    store = FileStudyStore(tmp_path)
    for call in (store.exists, store.load, store.delete):
        with pytest.raises(InputError) as info:
            call(name)
        assert info.value.details["field"] == "study"


def test_the_longest_valid_name_fits_the_file_store(tmp_path) -> None:
    store = FileStudyStore(tmp_path)
    store.save(Optimizer({"x": Real(0, 1)}, name="n" * 128))
    assert store.exists("n" * 128) and list(store.names()) == ["n" * 128]
