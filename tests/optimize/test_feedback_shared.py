"""The feedback learner on a shared store (the real Redis): learners in several threads, each
with its own in-memory view, learn one task type at once and lose no feedback.

Each thread builds its own :class:`FeedbackLearner` on its own connection, as separate
service processes would, and they meet at a barrier before every round so their writes
interleave. A plain save of a learner's own view would keep only the last writer's records;
the atomic update keeps every one.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import pytest

from workbench.optimize.feedback import STUDY_PREFIX, FeedbackLearner
from workbench.optimize.storage import RedisStudyStore
from workbench.redis_adapter import RedisAdapter

LEARNERS = 4
ROUNDS = 3
#: Bound on every wait at the barrier: a broken synchronisation fails, never hangs.
WAIT_S = 60.0


def _record(worker: int, i: int) -> dict[str, Any]:
    return {
        "task_type": "support_chat",
        # distinct per worker and round, so every record is its own trial
        "parameters": {"temperature": 0.05 + 0.3 * worker + 0.05 * i, "max_tokens": 300 + i},
        "latency_ms": 400.0 + 10 * i,
        "success": True,
        "quality": 0.5 + 0.01 * (worker * ROUNDS + i),
        "cost": 0.0,
    }


@pytest.mark.redis
def test_learners_sharing_redis_lose_no_feedback(redis_url: str, redis_adapter: Any) -> None:
    prefix = redis_adapter.prefix
    barrier = threading.Barrier(LEARNERS, timeout=WAIT_S)

    def worker(w: int) -> list[dict[str, Any]]:
        store = RedisStudyStore(RedisAdapter(redis_url, prefix=prefix))
        learner = FeedbackLearner(store=store, seed=w)
        suggested = []
        for i in range(ROUNDS):
            barrier.wait()
            learner.observe([_record(w, i)])
            barrier.wait()
            # a suggestion is pending in the shared study until its feedback arrives
            suggested.append(learner.suggest("support_chat", time_limit_s=5.0))
        return suggested

    with concurrent.futures.ThreadPoolExecutor(LEARNERS) as pool:
        futures = [pool.submit(worker, w) for w in range(LEARNERS)]
        suggestions = [s for f in futures for s in f.result()]

    study = RedisStudyStore(redis_adapter).load(f"{STUDY_PREFIX}support_chat")
    completed = [t for t in study.trials if t.status == "completed"]
    assert len(completed) == LEARNERS * ROUNDS, [t.params for t in completed]
    scorer = FeedbackLearner()
    told = [
        scorer.score(r["quality"], r["latency_ms"], r["cost"])
        for r in (_record(w, i) for w in range(LEARNERS) for i in range(ROUNDS))
    ]
    assert sorted(t.outcomes["score"] for t in completed) == pytest.approx(sorted(told))
    # every suggestion was committed as a pending trial of the one study, none lost or shared
    pending = [t for t in study.trials if t.status == "pending"]
    assert len(pending) == len(suggestions) == LEARNERS * ROUNDS
    keys = {tuple(sorted(t.params.items())) for t in pending}
    assert len(keys) == len(pending)
    # a fresh learner sees all of it
    fresh = FeedbackLearner(store=RedisStudyStore(redis_adapter))
    assert len(fresh.optimizers["support_chat"].completed) == LEARNERS * ROUNDS
