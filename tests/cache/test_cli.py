"""``workbench cache stats|warm|flush-namespace`` against the real Redis (own key prefix)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.redis_adapter import RedisAdapter


@pytest.fixture
def prefix(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The CLI's settings point at the test Redis under a prefix of this test's own."""
    p = f"wbtest:{uuid.uuid4().hex[:12]}:"
    monkeypatch.setenv("WORKBENCH_REDIS_URL", redis_url)
    monkeypatch.setenv("WORKBENCH_REDIS_PREFIX", p)
    yield p
    RedisAdapter(redis_url, prefix=p).delete_prefixed()


def test_warm_stats_flush(
    tmp_path: Path, prefix: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({f"k{i}": {"i": i} for i in range(1200)}))
    assert main(["cache", "warm", str(manifest), "--service", "svc", "--ttl", "60"]) == 0
    assert "warmed 1200 keys" in capsys.readouterr().out
    raw = RedisAdapter(redis_url)
    ttl = raw.ttl(f"{prefix}cache:svc:k7")
    assert raw.get(f"{prefix}cache:svc:k7") is not None and ttl is not None and 0 < ttl <= 60

    lines = tmp_path / "m.jsonl"
    lines.write_text('{"key": "a", "value": [1]}\n\n{"key": "b", "value": 2, "ttl": 5}\n')
    assert main(["cache", "warm", str(lines), "--service", "other"]) == 0
    ttl = raw.ttl(f"{prefix}cache:other:b")
    assert ttl is not None and 0 < ttl <= 5
    capsys.readouterr()

    assert main(["cache", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["namespaces"] == {"other": 2, "svc": 1200} and not stats["truncated"]
    assert stats["key_prefix"] == f"{prefix}cache:" and stats["latency_ms"] > 0
    assert main(["cache", "stats", "--service", "other"]) == 0
    assert "other" in capsys.readouterr().out

    assert main(["cache", "flush-namespace", "--service", "svc"]) == 2  # no --yes
    assert "without --yes" in capsys.readouterr().err
    assert raw.exists(f"{prefix}cache:svc:k7")
    assert main(["cache", "flush-namespace", "--service", "svc", "--yes"]) == 0
    assert "deleted 1200 keys" in capsys.readouterr().out
    assert not raw.exists(f"{prefix}cache:svc:k7") and raw.exists(f"{prefix}cache:other:a")


def test_redis_out_is_an_error_not_a_memory_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKBENCH_REDIS_URL", "redis://127.0.0.1:1/0")
    manifest = tmp_path / "m.json"
    manifest.write_text('{"k": 1}')
    assert main(["cache", "warm", str(manifest), "--service", "svc"]) == 2
    assert "unreachable" in capsys.readouterr().err
    assert main(["cache", "flush-namespace", "--service", "svc", "--yes"]) == 2
    assert main(["cache", "stats", "--json"]) == 1
    assert "error" in json.loads(capsys.readouterr().out)


def test_bad_items_are_listed_and_the_rest_stored(
    tmp_path: Path, prefix: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "bad.jsonl"
    broken.write_text('{"key": "a", "value": 1}\n{"value": 2}\n{"key": "c", "value": 3}\n')
    assert main(["cache", "warm", str(broken), "--service", "svc"]) == 1
    captured = capsys.readouterr()
    assert "warmed 2 keys" in captured.out and "line 2" in captured.err
    raw = RedisAdapter(redis_url)
    assert raw.exists(f"{prefix}cache:svc:a") and raw.exists(f"{prefix}cache:svc:c")
    not_a_mapping = tmp_path / "bad.json"
    not_a_mapping.write_text("[1, 2]")
    assert main(["cache", "warm", str(not_a_mapping), "--service", "svc"]) == 2
    assert main(["cache", "warm", str(broken), "--service", "svc", "--ttl", "-1"]) == 2
    assert "--ttl" in capsys.readouterr().err
    assert main(["cache", "flush-namespace", "--service", "bad name", "--yes"]) == 2
    assert "--service" in capsys.readouterr().err
