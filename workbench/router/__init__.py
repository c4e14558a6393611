"""LLM router: an OpenAI-compatible routing proxy in front of LLM backends.

- :mod:`~workbench.router.config`: the TOML configuration (``[router]``, ``[[backends]]``);
- :mod:`~workbench.router.server`: the proxy (``/v1/*``, ``/health``, ``/metrics``);
- :mod:`~workbench.router.transport`: one pooled keep-alive client per backend;
- :mod:`~workbench.router.translate`: Anthropic and Ollama to and from the OpenAI shapes;
- :mod:`~workbench.router.fake_backend`: an emulated backend for tests and benchmarks;
- :mod:`~workbench.router.balancer`: backend state, balancing strategies, the ``Router``;
- :mod:`~workbench.router.learning`: Thompson-sampling learned routing;
- :mod:`~workbench.router.health`: active probes and passive outlier ejection;
- :mod:`~workbench.router.limits`: per client key RPM and TPM limits, local or shared in Redis;
- :mod:`~workbench.router.accesslog`: the JSON access log (one line per ``/v1`` request);
- :mod:`~workbench.router.rules`: the platform's complexity rule table (``tiers``);
- :mod:`~workbench.router.platform`: the platform's ``/api/v1/fast-coordinator/*`` routes,
  ``POST /admin/reload`` and the router's ``/openapi.json``.

The names that need aiohttp (the ``service`` extra) are imported on first use, so the
configuration classes load without it.
"""

from __future__ import annotations

import importlib
from typing import Any

from workbench.router.balancer import (
    BackendState,
    Outcome,
    Router,
    make_strategy,
    register_strategy,
)
from workbench.router.config import BackendConfig, BreakerConfig, RouterConfig, load_config
from workbench.router.health import HealthProber, OutlierDetector
from workbench.router.learning import ThompsonLearner, ThompsonStrategy
from workbench.router.rules import RuleContext, RuleDecision, TierStrategy, decide, last_user_text

__all__ = [
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
]

_LAZY = {
    "FakeBackend": "workbench.router.fake_backend",
    "FakeKnobs": "workbench.router.fake_backend",
    "run_fake_backend": "workbench.router.fake_backend",
    "create_app": "workbench.router.server",
    "run_router": "workbench.router.server",
    "serve": "workbench.router.server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench.router' has no attribute {name!r}")
    from workbench._optional import require

    require("aiohttp")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
