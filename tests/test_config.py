from pathlib import Path

import pytest

from workbench.config import Settings, load_settings
from workbench.errors import ConfigError


def test_defaults_without_any_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.postgres_url == "postgresql://127.0.0.1:5432/test"
    assert s.api_token is None and s.workers == 1 and s.max_body_bytes == 1024 * 1024


def test_environment_overrides_toml_and_toml_overrides_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "wb.toml"
    cfg.write_text("port = 9000\nworkers = 3\n[mcts]\nmax_iterations = 500\n")
    s = load_settings(env={"WORKBENCH_PORT": "9100", "WORKBENCH_SMOKE": "yes"}, toml_path=cfg)
    assert s.port == 9100  # env wins
    assert s.workers == 3  # from the file
    assert s.smoke is True
    assert s.section("mcts")["max_iterations"] == 500


def test_subsystem_knobs_from_environment() -> None:
    s = load_settings(env={"WORKBENCH_MCTS__MAX_ITERATIONS": "250", "WORKBENCH_GPU__NAME": "a"})
    assert s.section("mcts") == {"max_iterations": 250}
    assert s.section("gpu")["name"] == "a"
    assert s.section("cache") == {}


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"WORKBENCH_PORT": "eighty"}, "WORKBENCH_PORT"),
        ({"WORKBENCH_PORT": "70000"}, "port"),
        ({"WORKBENCH_WORKERS": "0"}, "workers"),
        ({"WORKBENCH_REDIS_URL": "http://x"}, "redis_url"),
        ({"WORKBENCH_API_TOKEN": "short"}, "api_token"),
        ({"WORKBENCH_SMOKE": "maybe"}, "WORKBENCH_SMOKE"),
        ({"WORKBENCH_NOPE__X": "1"}, "WORKBENCH_NOPE__X"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings(env=env)


def test_unknown_toml_key_is_refused_with_known_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "wb.toml"
    cfg.write_text('redis_ulr = "redis://x"\n')
    with pytest.raises(ConfigError, match="redis_ulr") as info:
        load_settings(env={}, toml_path=cfg)
    assert "redis_url" in str(info.value)  # the message lists the right spelling


def test_missing_config_file_named_by_env_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WORKBENCH_CONFIG"):
        load_settings(env={"WORKBENCH_CONFIG": str(tmp_path / "absent.toml")})


def test_settings_are_frozen_and_redacted() -> None:
    s = Settings(api_token="a-long-token")
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]
    assert s.redacted()["api_token"] == "<set>"
    assert "a-long-token" not in repr(s.redacted())


def test_overrides_win_and_none_is_ignored() -> None:
    s = load_settings(env={"WORKBENCH_PORT": "9100"}, port=9200, host=None)
    assert s.port == 9200 and s.host == "127.0.0.1"
    with pytest.raises(ConfigError, match="nope"):
        load_settings(env={}, nope=1)


def test_from_section_builds_a_validated_subsystem_config() -> None:
    from dataclasses import dataclass

    from workbench.config import from_section

    @dataclass(frozen=True)
    class Knobs:
        size: int = 3
        rate: float = 1.5
        on: bool = False
        name: str = "x"
        names: tuple[str, ...] = ("a",)

        def __post_init__(self) -> None:
            if self.size < 1:
                raise ConfigError(f"[demo] size={self.size}: use at least 1")

    k = from_section(Knobs, {"size": "4", "rate": 2, "on": "yes", "names": ["b", "c"]}, "demo")
    assert k == Knobs(size=4, rate=2.0, on=True, names=("b", "c"))
    assert from_section(Knobs, {}, "demo") == Knobs()
    assert from_section(Knobs, {"names": "b, c"}, "demo").names == ("b", "c")
    for bad, key in (
        ({"sise": 1}, "sise"),
        ({"size": 2.5}, "size"),
        ({"size": True}, "size"),
        ({"rate": "fast"}, "rate"),
        ({"on": "maybe"}, "on"),
        ({"names": 3}, "names"),
    ):
        with pytest.raises(ConfigError, match=key):
            from_section(Knobs, bad, "demo")
    with pytest.raises(ConfigError, match=r"\[demo\] size=0"):
        from_section(Knobs, {"size": 0}, "demo")


def test_bad_gpu_settings_name_the_key() -> None:
    from workbench.gpu.service import VisionConfig

    for key, value in (
        ("budget_fraction", 5),
        ("budget_fraction", 0),
        ("slots_per_device", 0),
        ("monitor_hz", -1),
    ):
        with pytest.raises(ConfigError, match=key):
            VisionConfig.from_settings(Settings(sections={"gpu": {key: value}}))
