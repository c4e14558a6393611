"""The public surface of workbench, pinned: a change here is a deliberate API change."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "workbench": [
        "BackendUnavailable",
        "CapacityError",
        "ConfigError",
        "ConflictError",
        "InputError",
        "NotFoundError",
        "PermissionDenied",
        "RateLimited",
        "Settings",
        "StorageFormatError",
        "WaitTimeout",
        "WorkbenchError",
        "WorkbenchWarning",
        "__version__",
        "load_settings",
    ],
    "workbench.analytics": [
        "AnalyticsConfig",
        "AnalyticsService",
        "AnalyticsStore",
        "BernoulliCusum",
        "BufferedWriter",
        "CusumDetector",
        "EwmaDetector",
        "Filters",
        "GroundTruth",
        "IngestReport",
        "JsonlDeadLetter",
        "Rejection",
        "StoreOptions",
        "StreamConsumer",
        "Validated",
        "canonical_json",
        "cusum_arl",
        "cusum_h_for_arl",
        "dashboard",
        "effectiveness_frame",
        "ewma_arl",
        "export_rewards",
        "generate_log",
        "ingest_file",
        "insights",
        "parameter_hash",
        "publish",
        "recommend",
        "success_interval",
        "to_observations",
        "trend",
        "validate",
        "write_log",
    ],
    "workbench.breaker": [
        "Breaker",
        "BreakerOpen",
        "BreakerSet",
        "SlidingWindowBreaker",
        "TimeLimiter",
    ],
    "workbench.cache": [
        "AsyncCache",
        "Cache",
        "CacheConfig",
        "MemoryTier",
        "RefreshAhead",
        "WarmReport",
        "ainvalidate_tags",
        "cached",
        "invalidate_prefix",
        "invalidate_tags",
        "warm",
    ],
    "workbench.router": [
        "BackendConfig",
        "BackendState",
        "BreakerConfig",
        "FakeBackend",
        "FakeKnobs",
        "HealthProber",
        "Outcome",
        "OutlierDetector",
        "Router",
        "RouterConfig",
        "RuleContext",
        "RuleDecision",
        "ThompsonLearner",
        "ThompsonStrategy",
        "TierStrategy",
        "create_app",
        "decide",
        "last_user_text",
        "load_config",
        "make_strategy",
        "register_strategy",
        "run_fake_backend",
        "run_router",
        "serve",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_exported_members(module: str) -> None:
    mod = importlib.import_module(module)
    assert list(mod.__all__) == sorted(mod.__all__), "__all__ must be sorted"
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is listed in __all__ but missing"
