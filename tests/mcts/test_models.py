"""Agent performance models: closed forms, priors, serialisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from workbench.errors import InputError, StorageFormatError
from workbench.mcts.models import (
    AgentModel,
    BetaPosterior,
    ModelRegistry,
    NormalGamma,
    agent_type,
    wilson_interval,
)


def test_beta_closed_form() -> None:
    b = BetaPosterior()
    for x in (1, 0, 1, 1, 0.5):
        b.update(x)
    assert (b.alpha, b.beta) == (4.5, 2.5)
    ref = stats.beta(4.5, 2.5)
    assert b.mean == pytest.approx(ref.mean()) and b.variance == pytest.approx(ref.var())
    with pytest.raises(InputError):
        b.update(1.5)


def test_normal_gamma_matches_batch_update() -> None:
    xs = np.random.default_rng(0).normal(900, 120, size=50)
    ng = NormalGamma()
    for x in xs:
        ng.update(float(x))
    mu0, k0, a0, b0 = 1000.0, 0.001, 1.0, 500.0
    n, xbar = len(xs), xs.mean()
    kn = k0 + n
    assert ng.mu == pytest.approx((k0 * mu0 + n * xbar) / kn)
    assert ng.a == pytest.approx(a0 + n / 2)
    bn = b0 + 0.5 * ((xs - xbar) ** 2).sum() + k0 * n * (xbar - mu0) ** 2 / (2 * kn)
    assert ng.b == pytest.approx(bn)
    assert ng.variance == pytest.approx(bn / (kn * (ng.a - 1)))
    assert math.isinf(NormalGamma().variance)
    dof, loc, scale = ng.predictive()
    assert dof == 2 * ng.a and loc == ng.mu and scale > 0


def test_agent_model_and_registry_roundtrip() -> None:
    reg = ModelRegistry()
    for i in range(12):
        reg.update("coder", "code", i % 3 != 0, 500.0 + i, 100.0)
    m = reg.get("coder", "code")
    assert m.n == 12 and m.expected_usage == pytest.approx((1000 + 1200) / (2 + 12 - 1))
    assert 0 < m.reliability < 1 and 0 < m.expected_performance < 1
    assert AgentModel().expected_usage == 1000.0 and AgentModel().consistency == 0.0
    back = ModelRegistry.from_dict(reg.to_dict())
    assert back.to_dict() == reg.to_dict()
    assert reg.rankings("code")[0]["agent"] == "coder"
    with pytest.raises(StorageFormatError):
        ModelRegistry.from_dict({"version": 99})


def test_helpers() -> None:
    assert agent_type("personal-assistant") == "personal" and agent_type("planner") == "cognitive"
    lo, hi = wilson_interval(0.5, 20)
    assert 0 < lo < 0.5 < hi < 1
    assert wilson_interval(0.5, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("success", "latency_ms", "tokens"),
    [
        (1.0, 1e200, None),  # (x - mu)^2 overflows
        (1.0, math.inf, None),
        (1.0, math.nan, None),
        (1.0, None, math.inf),
        (1.0, None, -1.0),
        (1.5, 300.0, 10.0),
        (math.nan, 300.0, 10.0),
    ],
)
def test_a_refused_outcome_changes_nothing(
    success: float, latency_ms: float | None, tokens: float | None
) -> None:
    """An outcome the model cannot take raises InputError before any posterior moves, and
    the registry creates no model for it."""
    reg = ModelRegistry()
    reg.update("coder", "code", 1.0, 300.0, 100.0)
    before = reg.to_dict()
    with pytest.raises(InputError):
        reg.update("coder", "code", success, latency_ms, tokens)
    with pytest.raises(InputError):
        reg.update("fresh", "code", success, latency_ms, tokens)
    assert reg.to_dict() == before and len(reg) == 1


def test_a_latency_posterior_that_would_overflow_is_refused_whole() -> None:
    ng = NormalGamma(mu=0.0, kappa=1.0, a=1.0, b=1.7e308)
    with pytest.raises(InputError, match="latency"):
        AgentModel(latency=ng).update(1.0, 1e154)
    assert (ng.mu, ng.kappa, ng.a, ng.b) == (0.0, 1.0, 1.0, 1.7e308)
