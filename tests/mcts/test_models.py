"""Agent performance models: closed forms, priors, serialisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from workbench.errors import InputError, StorageFormatError
from workbench.mcts.models import (
    START,
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


def test_pair_posterior_is_the_agents_mean_shrunk_by_the_pairs_record() -> None:
    reg = ModelRegistry(pair_strength=4.0)
    outcomes = [1.0, 1.0, 0.0, 1.0]
    for s in outcomes:
        reg.update_step("x", "y", "qa", s)
    for _ in range(6):
        reg.update_step(START, "y", "qa", 0.0)
    mu = reg.get("y", "qa").success.mean
    assert mu == pytest.approx((1 + 3) / (2 + 10))
    post = reg.pair_posterior("x", "y", "qa")
    assert (post.alpha, post.beta) == pytest.approx((4 * mu + 3, 4 * (1 - mu) + 1))
    never = reg.pair_posterior("z", "y", "qa")  # never seen: the agent's own mean
    assert never.mean == pytest.approx(mu) and reg.pair("z", "y", "qa").n == 0
    assert {(p, a) for p, a, _ in reg.pairs("qa")} == {("x", "y"), (START, "y")}
    assert reg.pairs("other") == []


def test_discounted_posteriors_match_their_closed_form() -> None:
    """With decay d the success posterior is the prior plus sum_k d^(n-1-k) x_k."""
    d = 0.9
    xs = np.random.default_rng(0).random(40) < 0.3
    reg = ModelRegistry(decay=d)
    for x in xs:
        reg.update_step("p", "a", "general", float(x))
    w = d ** np.arange(len(xs))[::-1]
    m = reg.get("a")
    assert m.success.alpha == pytest.approx(1 + (w * xs).sum())
    assert m.success.beta == pytest.approx(1 + (w * ~xs).sum())
    pair = reg.pair("p", "a")
    assert (pair.successes, pair.failures) == pytest.approx(((w * xs).sum(), (w * ~xs).sum()))
    assert ModelRegistry().get("a").success.alpha == 1.0  # decay 1: the exact posterior
    with pytest.raises(InputError, match="decay"):
        ModelRegistry(decay=0.0)


@pytest.mark.parametrize("decay", [1.0, 0.8])
def test_a_correction_equals_having_observed_the_corrected_value(decay: float) -> None:
    xs = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    k = 2  # the observation corrected from 1 to 0
    reg, ref = ModelRegistry(decay=decay), ModelRegistry(decay=decay)
    at = None
    for i, x in enumerate(xs):
        model, pair = reg.update_step(START, "a", "qa", x)
        ref.update_step(START, "a", "qa", 0.0 if i == k else x)
        if i == k:
            at = (model.n, pair.n, reg.clock("qa"))
    assert at is not None
    assert reg.correct_step(START, "a", "qa", 1.0, 0.0, *at)
    got, want = reg.get("a", "qa").success, ref.get("a", "qa").success
    assert (got.alpha, got.beta) == pytest.approx((want.alpha, want.beta))
    gp, rp = reg.pair(START, "a", "qa"), ref.pair(START, "a", "qa")
    assert (gp.successes, gp.failures) == pytest.approx((rp.successes, rp.failures))
    if decay != 1.0:  # without the clock its weight is unknown: nothing is changed
        assert not ref.correct_step(START, "a", "qa", 1.0, 0.0, *at[:2])
    reg.clear()  # the observation is gone: nothing to correct
    assert not reg.correct_step(START, "a", "qa", 1.0, 0.0, *at)
    with pytest.raises(InputError):
        ref.correct_step(START, "a", "qa", 1.0, 2.0, *at)


def test_models_not_run_regain_their_uncertainty() -> None:
    """Discounting is per tick of the task type's clock, for every model of the task type:
    an agent left alone drifts back toward its prior (discounted Thompson sampling)."""
    d = 0.9
    reg = ModelRegistry(decay=d)
    for _ in range(20):
        reg.update_step(START, "idle", "qa", 0.0)
    a0, b0 = reg.get("idle", "qa").success.alpha, reg.get("idle", "qa").success.beta
    s0 = reg.pair(START, "idle", "qa").failures
    for _ in range(15):  # only the other agent runs
        reg.update_step(START, "busy", "qa", 1.0)
    idle = reg.peek("idle", "qa").success
    assert (idle.alpha, idle.beta) == pytest.approx((1 + d**15 * (a0 - 1), 1 + d**15 * (b0 - 1)))
    assert reg.pair(START, "idle", "qa").failures == pytest.approx(s0 * d**15)
    assert reg.clock("qa") == 35 and reg.clock("other") == 0
    reg.update("x", "other", 1.0)  # another task type's clock: no effect on qa
    assert reg.peek("idle", "qa").success.alpha == pytest.approx(idle.alpha)
    back = ModelRegistry.from_dict(reg.to_dict(), **reg.settings())
    assert back.clock("qa") == 35 and back.to_dict() == reg.to_dict()


def test_the_registry_is_bounded_and_keeps_its_ledger() -> None:
    reg = ModelRegistry(max_models=3, max_credited=2)
    for i in range(5):
        reg.update_step(START, f"a{i}", f"t{i}", 1.0)
    assert len(reg) == 3 and [k for k, _ in reg] == [("a2", "t2"), ("a3", "t3"), ("a4", "t4")]
    assert len(reg.to_dict()["pairs"]) == 3
    reg.get("a2", "t2")  # used: now the most recent
    reg.update("a5", "t5", 1.0)
    assert next(k for k, _ in reg) == ("a4", "t4")
    assert reg.peek("new", "t") == AgentModel() and len(reg) == 3  # peek keeps nothing
    assert reg.credit("o1") and not reg.credit("o1") and reg.credit("o2") and reg.credit("o3")
    assert not reg.is_credited("o1") and reg.is_credited("o3")
    back = ModelRegistry.from_dict(reg.to_dict(), **reg.settings())
    assert back.to_dict() == reg.to_dict() and back.is_credited("o2")
    fresh = ModelRegistry()
    fresh.restore(reg)
    assert fresh.to_dict() == reg.to_dict()
    old = {"version": 1, "models": reg.to_dict()["models"]}  # format 1: agent models only
    assert len(ModelRegistry.from_dict(old)) == 3
    with pytest.raises(StorageFormatError, match="corrupt"):
        ModelRegistry.from_dict({"version": 2, "pairs": [{"agent": "a"}]})
