"""VisionService wiring and its [gpu] configuration."""

from __future__ import annotations

import pytest

from workbench.errors import ConfigError, ConflictError
from workbench.gpu import SimulatedBackend
from workbench.gpu.service import VisionConfig, VisionService, make_backend


def test_config_from_section_coerces_and_refuses_unknown_keys() -> None:
    cfg = VisionConfig.from_section({"devices": "2", "memory_gib": 16, "backend": "simulated"})
    assert cfg.devices == 2 and cfg.memory_gib == 16.0
    with pytest.raises(ConfigError, match="unknown"):
        VisionConfig.from_section({"gpus": 2})
    with pytest.raises(ConfigError):
        VisionConfig.from_section({"devices": "two"})
    with pytest.raises(ConfigError):
        VisionConfig(backend="cuda")


def test_auto_backend_falls_back_to_simulated_without_nvml() -> None:
    from workbench.gpu import nvml_available

    backend = make_backend(VisionConfig(devices=3))
    if not nvml_available():
        assert isinstance(backend, SimulatedBackend) and backend.device_count() == 3
    backend.close()


def test_service_views_and_external_jobs() -> None:
    service = VisionService(
        VisionConfig(backend="simulated", monitor_hz=50, max_run_s=0.2),
        backend=SimulatedBackend(devices=1, memory_gib=24),
        export_metrics=False,
    ).start()
    try:
        assert service.status()["gpuMetrics"]["totalVRAM"] == 24.0
        assert [m["loaded"] for m in service.models()] == [False] * 4
        job = service.submit_external("clip-vit-b32", 5, None)
        with pytest.raises(Exception, match="not completed within"):
            job.future.result(5)  # nobody completed it: max_run_s ended it
        assert service.job_status(job) == "failed"
        with pytest.raises(ConflictError):
            service.complete_external(job.id, True)
        assert service.models()[1]["loaded"] is True  # resident for its keep-alive
        assert service.metrics()["jobs"] == {"failed": 1}
    finally:
        service.close()


def test_models_and_thresholds_from_config() -> None:
    cfg = VisionConfig.from_section(
        {
            "keep_alive_s": 60,
            "temperature_warning_c": 70,
            "models": {"sam-vit-h": {"type": "analysis", "size_gb": 2.5, "load_ms": 6000}},
        }
    )
    table = cfg.model_table()
    assert table["sam-vit-h"].size_bytes == int(2.5 * 1024**3)
    assert table["sam-vit-h"].load_time_s == 6.0 and table["sam-vit-h"].keep_alive_s == 60
    assert table["sd3b"].keep_alive_s == 60
    assert cfg.thresholds().temperature_warning_c == 70
    with pytest.raises(ConfigError, match="size_gb"):
        VisionConfig(models={"x": {"type": "analysis"}})
    with pytest.raises(ConfigError):
        VisionConfig(models={"x": {"size_gb": "big"}})


def test_a_lost_device_is_taken_out_of_placement_until_it_returns() -> None:
    from workbench.gpu import ScenarioStep

    backend = SimulatedBackend(devices=2, memory_gib=24)
    service = VisionService(
        VisionConfig(backend="simulated"), backend=backend, export_metrics=False
    )
    service.monitor.sample()
    backend.apply([ScenarioStep(0, 0, "fall_off")])
    service.monitor.sample()
    with service.allocator.reserve("w", 1024**3) as r:
        assert r.device == 1
    assert service.allocator.snapshot()["devices"][0]["online"] is False
    backend.apply([ScenarioStep(0, 0, "recover")])
    service.monitor.sample()
    assert service.allocator.snapshot()["devices"][0]["online"] is True
    service.close()
