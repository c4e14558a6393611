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


# ----- shared stores: versions, conditional commits, atomic creation -----------------------------


@pytest.fixture(params=["redis", "postgres"])
def shared_store(request):
    """A RedisStudyStore or PostgresStudyStore on the real server, isolated per test."""
    if request.param == "redis":
        yield RedisStudyStore(request.getfixturevalue("redis_adapter"))
        return
    from workbench.optimize.storage import PostgresStudyStore
    from workbench.postgres_adapter import PostgresAdapter

    adapter = PostgresAdapter(
        request.getfixturevalue("postgres_url"),
        schema=request.getfixturevalue("postgres_schema"),
        statement_timeout_s=10,
    )
    yield PostgresStudyStore(adapter)
    adapter.close()


def test_shared_store_versions_refuse_a_stale_commit(shared_store) -> None:
    from workbench.errors import ConflictError

    opt = study("delta")
    created = shared_store.create(opt)
    assert created.version == 1
    with pytest.raises(ConflictError, match="already exists"):
        shared_store.create(study("delta"))
    first = shared_store.read("delta")
    second = shared_store.read("delta")
    assert first.version == second.version == 1
    assert first.study.to_dict() == opt.to_dict()
    first.study.tell(first.study.pending[0], {"y": 0.5})
    assert shared_store.commit(first.study, first.version) == 2
    second.study.ask()  # based on version 1: must not overwrite the tell
    assert shared_store.commit(second.study, second.version) is None
    now = shared_store.read("delta")
    assert now.version == 2 and now.study.to_dict() == first.study.to_dict()
    shared_store.save(now.study)  # an overwrite still raises the version
    assert shared_store.read("delta").version == 3
    assert shared_store.commit(now.study, 2) is None
    assert list(shared_store.names()) == ["delta"] and shared_store.exists("delta")
    assert shared_store.delete("delta") and not shared_store.exists("delta")
    assert shared_store.commit(now.study, 3) is None  # deleted: nothing to update
    with pytest.raises(NotFoundError):
        shared_store.read("delta")
    shared_store.save(opt)  # save creates too
    assert shared_store.read("delta").version == 1


def test_shared_store_resumes_with_the_same_next_point(shared_store) -> None:
    original = study("eps")
    shared_store.save(original)
    restored = shared_store.load("eps")
    assert restored.to_dict() == original.to_dict()
    assert restored.ask().params == original.ask().params


def test_shared_store_refuses_an_unknown_format(shared_store) -> None:
    opt = study("zeta")
    shared_store.save(opt)
    data = json.loads(dumps(opt))
    data["version"] = 99
    if isinstance(shared_store, RedisStudyStore):
        key = shared_store.key("zeta")
        shared_store.adapter.set_versioned(key, json.dumps(data).encode())
    else:
        shared_store.adapter.execute(
            "UPDATE optimize_studies SET document = %s::json WHERE name = 'zeta'",
            (json.dumps(data),),
        )
    with pytest.raises(StorageFormatError, match="version 99"):
        shared_store.read("zeta")


def test_redis_store_upgrades_a_plain_string_key_keeping_its_expiry(redis_adapter) -> None:
    """Studies written by the previous Redis layout (one string per study) stay readable."""
    store = RedisStudyStore(redis_adapter)
    opt = study("legacy")
    redis_adapter.set(store.key("legacy"), dumps(opt), ttl_s=120)
    snapshot = store.read("legacy")
    assert snapshot.version == 1 and snapshot.study.to_dict() == opt.to_dict()
    assert redis_adapter.get_versioned(store.key("legacy"))[1] == 1
    ttl = redis_adapter.ttl(store.key("legacy"))
    assert ttl is not None and 100 < ttl <= 120
    redis_adapter.set(store.key("old2"), dumps(study("old2")))
    store.save(study("old2"))  # writing a string key upgrades it too
    assert store.read("old2").version == 2
    redis_adapter.set(store.key("old3"), dumps(study("old3")))
    from workbench.errors import ConflictError

    with pytest.raises(ConflictError):
        store.create(study("old3"))


def test_postgres_store_migrates_once_into_its_schema(postgres_url, postgres_schema) -> None:
    from workbench.optimize.storage import PG_MIGRATIONS, PostgresStudyStore
    from workbench.postgres_adapter import PostgresAdapter

    adapter = PostgresAdapter(postgres_url, schema=postgres_schema)
    try:
        store = PostgresStudyStore(adapter)
        assert adapter.schema_version("optimize") == 0  # nothing happens before first use
        assert list(store.names()) == []
        assert adapter.schema_version("optimize") == len(PG_MIGRATIONS) == 1
        assert PostgresStudyStore(adapter).migrate() == 1  # idempotent
        row = adapter.fetchone(
            "SELECT table_schema FROM information_schema.tables "
            "WHERE table_name = 'optimize_studies' AND table_schema = %s",
            (postgres_schema,),
        )
        assert row == (postgres_schema,)
    finally:
        adapter.close()
