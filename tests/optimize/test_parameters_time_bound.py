"""POST /api/v1/parameters is bounded end to end by ``[optimize] ask_time_limit_s``: the
suggestion and the model fit of the recommendation whose score it reports share the limit,
and a recommendation the limit cut short is the best observed one, said so in the response.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from tests.api.conftest import bearer, run_with_client
from workbench.api import optimize as routes
from workbench.api import system
from workbench.api.app import create_app
from workbench.config import Settings
from workbench.optimize import Optimizer, Real
from workbench.optimize.feedback import FeedbackLearner

TOKEN = "api-token-123"
H = bearer(TOKEN)
LIMIT_S = 0.5
#: Observations of the task type: a full GP fit at this size takes about 1 s here, twice
#: the limit, so an unbounded recommendation would overrun it.
N = 300


def _executions(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    return [
        {
            "taskType": "code_generation",
            "parameters": {
                "temperature": float(rng.uniform(0, 1.5)),
                "topP": float(rng.uniform(0.1, 1)),
                "maxTokens": int(rng.integers(100, 3000)),
            },
            "latencyMs": float(rng.uniform(200, 3000)),
            "success": True,
            "quality": float(rng.uniform(0.3, 0.9)),
            "cost": 0.0,
        }
        for _ in range(n)
    ]


def test_parameter_suggestion_and_recommendation_share_the_time_limit() -> None:
    settings = Settings(
        api_token=TOKEN,
        sections={"optimize": {"store": "memory", "ask_time_limit_s": LIMIT_S}},
    )
    app = create_app(settings, routers=[system.router, routes.router])

    async def scenario(client: TestClient) -> None:
        # a small task type first, so imports and compilation are not timed below
        warm = {"executions": _executions(8)}
        for e in warm["executions"]:
            e["taskType"] = "warm_up"
        r = await client.post("/api/v1/parameters/feedback", json=warm, headers=H)
        assert r.status == 200, await r.text()
        r = await client.post("/api/v1/parameters", json={"taskType": "warm_up"}, headers=H)
        assert r.status == 200, await r.text()

        execs = _executions(N)
        scorer = FeedbackLearner()
        observed = max(scorer.score(e["quality"], e["latencyMs"], e["cost"]) for e in execs)
        r = await client.post("/api/v1/parameters/feedback", json={"executions": execs}, headers=H)
        assert r.status == 200, await r.text()
        # The first suggestion at this size pays one-off costs outside any bound (about 0.7 s
        # of the first GP fit at n=300 here); the bound is checked on the next ones, where an
        # unbounded recommendation still needs a full fit (about 1 s): the suggestion's own
        # fit is cut short by its share of the limit every time.
        for attempt in range(3):
            t0 = time.perf_counter()
            r = await client.post(
                "/api/v1/parameters", json={"taskType": "code_generation"}, headers=H
            )
            elapsed = time.perf_counter() - t0
            assert r.status == 200, await r.text()
            body = await r.json()
            # Whether the recommendation's fit finished within what the suggestion left of
            # the limit depends on this machine's speed (usually not, at n=300): either it did
            # and the basis is the posterior mean, or the answer is the best observed score
            # and says so. test_best_without_time_is_the_best_observed_... pins the fallback.
            basis = body["expected_quality_basis"]
            assert basis in ("observed", "posterior_mean"), body
            if basis == "observed":
                assert any("best observed score" in line for line in body["reasoning"]), body
                assert body["expected_quality"] == pytest.approx(observed)
            if attempt:
                # the limit plus what the suggestion overruns it by at this size (its
                # candidate pool is always scored in full)
                assert elapsed < LIMIT_S + 0.4, (attempt, elapsed)

    run_with_client(app, scenario)


def test_best_without_time_is_the_best_observed_and_is_not_cached() -> None:
    opt = Optimizer({"x": Real(0, 1)}, {"y": "maximize"}, strategy="sobol")
    for x in (0.1, 0.35, 0.5, 0.62, 0.9):
        opt.tell({"x": x}, {"y": -((x - 0.6) ** 2)})
    hurried = opt.best(time_limit_s=0)
    assert hurried.truncated and hurried.basis == "observed"
    assert hurried.trial_id == opt.best_observed().trial_id
    modelled = opt.best()
    assert not modelled.truncated and modelled.basis == "posterior_mean"
