"""The router's response cache for deterministic chat completions."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.router.test_limits import Clock, config, post, serving
from tests.router.test_server import CHAT, backend_entry, fakes, wait_for
from workbench.errors import ConfigError
from workbench.redis_adapter import RedisAdapter
from workbench.router.config import RouterConfig
from workbench.router.response_cache import CACHE_HEADER, cache_key

DET = {**CHAT, "temperature": 0}
CHAT_PATH = "/v1/chat/completions"


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    """A cache namespace of its own; its Redis keys are deleted afterwards."""
    ns = f"wbtest-{uuid.uuid4().hex[:12]}"
    yield ns
    RedisAdapter(redis_url, prefix=f"workbench:router:{ns}:").delete_prefixed()


def test_cache_key_covers_model_messages_and_params() -> None:
    base = cache_key(DET, "k")
    assert base is not None and len(base) == 64
    assert cache_key({**DET, "stream": False, "user": "u1"}, "k") == base  # volatile fields
    assert cache_key(dict(reversed(list(DET.items()))), "k") == base  # order does not matter
    assert cache_key({**DET, "model": "other"}, "k") != base
    assert cache_key({**DET, "max_tokens": 5}, "k") != base
    assert cache_key({**DET, "messages": [{"role": "user", "content": "bye"}]}, "k") != base
    assert cache_key(DET, "another-client") != base
    for body in (
        CHAT,  # no temperature: the default is not 0
        {**CHAT, "temperature": 0.7},
        {**CHAT, "temperature": False},
        {**DET, "stream": True},
        {**DET, "n": 2},
    ):
        assert cache_key(body, "k") is None


def test_a_deterministic_request_is_answered_from_the_cache() -> None:
    with (
        fakes({}) as (f,),
        serving(config([backend_entry(f, "a")], cache={"ttl_s": 60})) as t,
    ):
        miss = post(t.url, body=DET)
        hit = post(t.url, body=DET)
        assert miss.status_code == hit.status_code == 200
        assert miss.headers[CACHE_HEADER] == "miss" and hit.headers[CACHE_HEADER] == "hit"
        assert hit.content == miss.content and hit.headers["x-workbench-backend"] == "a"
        assert f.stats.requests[CHAT_PATH] == 1
        # Another key does not see the first key's answers; other requests are not cached.
        assert post(t.url, "sk-team-b", body=DET).headers[CACHE_HEADER] == "miss"
        for body in (CHAT, {**DET, "stream": True}, {**CHAT, "temperature": 1}):
            assert CACHE_HEADER not in post(t.url, body=body).headers
        assert f.stats.requests[CHAT_PATH] == 5


def test_failures_are_not_cached_and_sharing_is_opt_in() -> None:
    with fakes({"error_rate": 1.0}) as (bad,), fakes({}) as (good,):
        cfg = config([backend_entry(bad, "bad")], retries=0, cache={"ttl_s": 60})
        with serving(cfg) as t:
            assert [post(t.url, body=DET).status_code for _ in range(2)] == [502, 502]
            assert bad.stats.requests[CHAT_PATH] == 2
        cfg = config([backend_entry(good, "a")], cache={"ttl_s": 60, "shared_across_keys": True})
        with serving(cfg) as t:
            assert post(t.url, body=DET).headers[CACHE_HEADER] == "miss"
            assert post(t.url, "sk-team-b", body=DET).headers[CACHE_HEADER] == "hit"


def test_entries_expire_with_their_ttl(redis_url: str, namespace: str) -> None:
    with fakes({}) as (f,):
        cfg = config(
            [backend_entry(f, "a")], cache={"ttl_s": 30, "url": redis_url, "namespace": namespace}
        )
        with serving(cfg) as t:
            assert post(t.url, body=DET).headers[CACHE_HEADER] == "miss"
            adapter = RedisAdapter(redis_url)
            pattern = f"workbench:router:{namespace}:*"
            wait_for(lambda: bool(list(adapter.scan(pattern))))
            (key,) = list(adapter.scan(pattern))
            ttl = adapter.ttl(key)
            assert ttl is not None and 0 < ttl <= 30


def test_two_routers_share_a_redis_cache(redis_url: str, namespace: str) -> None:
    with fakes({}) as (f,):
        cfg = config(
            [backend_entry(f, "a")],
            cache={"ttl_s": 60, "url": redis_url, "namespace": namespace},
        )
        with serving(cfg) as one, serving(cfg) as two:
            assert post(one.url, body=DET).headers[CACHE_HEADER] == "miss"
            adapter = RedisAdapter(redis_url)
            # The write happens after the answer went out: wait until it landed.
            wait_for(lambda: bool(list(adapter.scan(f"workbench:router:{namespace}:*"))))
            r = post(two.url, body=DET)
            assert r.status_code == 200 and r.headers[CACHE_HEADER] == "hit"
        assert f.stats.requests[CHAT_PATH] == 1


def test_hits_count_against_the_request_limit_and_are_logged(tmp_path: Path) -> None:
    log = tmp_path / "access.jsonl"
    with fakes({}) as (f,):
        cfg = config(
            [backend_entry(f, "a")],
            cache={"ttl_s": 60},
            limits={"rpm": 2, "tpm": 1000},
            access_log=str(log),
        )
        with serving(cfg, Clock()) as t:
            assert post(t.url, body=DET).headers[CACHE_HEADER] == "miss"
            hit = post(t.url, body=DET)
            assert hit.headers[CACHE_HEADER] == "hit"
            assert post(t.url, body=DET).status_code == 429
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["cache"] for x in lines] == ["miss", "hit", None]
    assert lines[1]["attempts"] == 0 and lines[1]["tokens"] == 0


@pytest.mark.parametrize(
    ("cache", "key"),
    [
        ({}, "router.cache.ttl_s"),
        ({"ttl_s": 0}, "router.cache.ttl_s"),
        ({"ttl_s": 5, "url": "http://x"}, "router.cache.url"),
        ({"ttl_s": 5, "namespace": "a b"}, "router.cache.namespace"),
        ({"ttl_s": 5, "ttl": 5}, "router.cache.ttl"),
        ({"ttl_s": 5, "max_entry_bytes": 0}, "router.cache.max_entry_bytes"),
    ],
)
def test_bad_cache_config_names_its_key(cache: dict[str, Any], key: str) -> None:
    doc = {
        "router": {"cache": cache},
        "backends": [{"name": "x", "url": "http://h/v1", "models": ["m"]}],
    }
    with pytest.raises(ConfigError) as info:
        RouterConfig.from_mapping(doc, environ={})
    assert info.value.details["field"] == key
