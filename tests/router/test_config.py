"""Router TOML loading and validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from workbench.errors import ConfigError
from workbench.router.config import BackendConfig, BreakerConfig, RouterConfig, load_config

GOOD = """
[router]
strategy = "round-robin"
client_keys_env = ["RK1", "RK2"]
retries = 1
deadline_s = 5
[router.strategies]
planner-pro = "thompson"
[router.fallbacks]
planner-pro = ["local-general"]
[router.breaker]
min_calls = 3
open_s = 2.5

[[backends]]
name = "a"
url = "http://127.0.0.1:9001/v1/"
models = ["m1"]
aliases = ["planner-pro"]
weight = 2
api_key_env = "A_KEY"

[[backends]]
name = "b"
kind = "ollama"
url = "http://127.0.0.1:11434"
models = ["llama3.2:3b"]
aliases = ["local-general"]
"""

ENV = {"RK1": "client-one", "RK2": "client-two", "A_KEY": "sk-secret-a"}


def test_loads_a_full_file(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    path.write_text(GOOD)
    cfg = load_config(path, environ=ENV)
    assert cfg.strategy == "round-robin" and cfg.retries == 1 and cfg.deadline_s == 5.0
    assert [b.name for b in cfg.backends] == ["a", "b"]
    a = cfg.backend("a")
    assert a.url == "http://127.0.0.1:9001/v1" and a.weight == 2 and a.models == ("m1",)
    assert a.api_key == "sk-secret-a" and cfg.backend("b").api_key is None
    assert cfg.client_keys == {"client-one", "client-two"}
    assert dict(cfg.strategies) == {"planner-pro": "thompson"}
    assert dict(cfg.fallbacks) == {"planner-pro": ("local-general",)}
    assert cfg.breaker.min_calls == 3 and cfg.breaker.open_s == 2.5
    assert cfg.breaker.kwargs()["half_open_calls"] == 3
    assert cfg.backend("b").names == ("llama3.2:3b", "local-general")
    # Secrets never show in repr.
    assert "sk-secret-a" not in repr(cfg) and "client-one" not in repr(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.retries = 3  # type: ignore[misc]


def test_minimal_config_gets_the_documented_defaults() -> None:
    cfg = RouterConfig.from_mapping(
        {"backends": [{"name": "x", "url": "http://h/v1", "models": ["m"]}]}, environ={}
    )
    assert cfg.strategy == "p2c-ewma" and cfg.retries == 2 and cfg.retry_budget == 0.2
    assert cfg.max_body_bytes == 4 * 1024 * 1024 and cfg.client_keys == frozenset()
    assert cfg.breaker == BreakerConfig()
    assert cfg.backends[0].kind == "openai" and cfg.backends[0].max_concurrency == 64


def _doc(router: dict | None = None, **backend: object) -> dict:
    b: dict = {"name": "x", "url": "http://h/v1", "models": ["m"]}
    b.update(backend)
    return {"router": router or {}, "backends": [b]}


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        (_doc(weight=0), "backends['x'].weight"),
        (_doc(weight="2"), "backends['x'].weight"),
        (_doc(models=[]), "backends['x'].models"),
        (_doc(models="m"), "backends['x'].models"),
        (_doc(kind="bard"), "backends['x'].kind"),
        (_doc(url="ftp://h/v1"), "backends['x'].url"),
        (_doc(url="http://h:8000"), "backends['x'].url"),  # openai kind must end in /v1
        (_doc(name="has space"), "backends[].name"),
        (_doc(max_concurrency=0), "backends['x'].max_concurrency"),
        (_doc(timeout_s=float("nan")), "backends['x'].timeout_s"),
        (_doc(colour="red"), "backends[0].colour"),
        (_doc(aliases=["m"]), "backends['x'].aliases"),
        (_doc({"strategy": "fastest"}), "router.strategy"),
        (_doc({"strategies": {"m": "nope"}}), "router.strategies.m"),
        (_doc({"strategies": {"ghost": "cost"}}), "router.strategies.ghost"),
        (_doc({"fallbacks": {"m": ["ghost"]}}), "router.fallbacks.m"),
        (_doc({"retries": -1}), "router.retries"),
        (_doc({"retry_budget": 1.5}), "router.retry_budget"),
        (_doc({"deadline_s": 0}), "router.deadline_s"),
        (_doc({"max_body_bytes": 10}), "router.max_body_bytes"),
        (_doc({"redis_url": "http://x"}), "router.redis_url"),
        (_doc({"forgetting": 1.0}), "router.forgetting"),
        (_doc({"rate_limit_rpm": 0}), "router.rate_limit_rpm"),
        (_doc({"breaker": {"failure_rate": 0}}), "router.breaker.failure_rate"),
        (_doc({"breaker": {"min_calls": 50, "size": 10}}), "router.breaker.min_calls"),
        (_doc({"breaker": {"max_open_s": 1, "open_s": 5}}), "router.breaker.max_open_s"),
        (_doc({"breaker": {"typo": 1}}), "router.breaker.typo"),
        (_doc({"stratgy": "cost"}), "router.stratgy"),
        (_doc({"probe_interval_s": 0}), "router.probe_interval_s"),
        ({"backends": []}, "backends"),
        ({"routr": {}, "backends": []}, "routr"),
    ],
)
def test_bad_values_name_their_key(doc: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        RouterConfig.from_mapping(doc, environ={})
    assert key in str(info.value), str(info.value)
    assert info.value.details["field"] == key


def test_duplicate_backend_names_are_refused() -> None:
    b = {"name": "x", "url": "http://h/v1", "models": ["m"]}
    with pytest.raises(ConfigError, match="unique"):
        RouterConfig.from_mapping({"backends": [b, dict(b)]}, environ={})


def test_missing_key_env_names_the_variable_not_a_value() -> None:
    with pytest.raises(ConfigError, match="'NOPE_KEY'"):
        RouterConfig.from_mapping(_doc(api_key_env="NOPE_KEY"), environ={})
    with pytest.raises(ConfigError, match=r"router\.client_keys_env"):
        RouterConfig.from_mapping(_doc({"client_keys_env": ["NOPE"]}), environ={"NOPE": ""})


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[router\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_ollama_url_may_be_the_server_root() -> None:
    b = BackendConfig(name="o", url="http://h:11434/", models=("llama3",), kind="ollama")
    assert b.url == "http://h:11434" and not b.openai_compatible
