"""Backend state, strategies, the registry and the Router facade, on an injected clock."""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Callable

import pytest

from workbench.errors import ConfigError
from workbench.router.balancer import STRATEGIES, Outcome, Router, register_strategy
from workbench.router.config import STRATEGY_NAMES, BackendConfig, BreakerConfig, RouterConfig
from workbench.router.health import OutlierDetector


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, s: float) -> None:
        self.now += s


def backend(name: str, *models: str, **kw: object) -> BackendConfig:
    return BackendConfig(name, f"http://127.0.0.1:9/{name}/v1", models or ("chat",), **kw)  # type: ignore[arg-type]


def make(
    *backends: BackendConfig,
    strategy: str = "p2c-ewma",
    seed: int = 0,
    clock: Clock | None = None,
    breaker: BreakerConfig | None = None,
    **kw: object,
) -> tuple[Router, Clock]:
    clock = clock or Clock()
    if not backends:
        backends = (backend("a"), backend("b"), backend("c"))
    config = RouterConfig(
        backends=backends,
        strategy=strategy,
        breaker=breaker or BreakerConfig(min_calls=4, size=10, open_s=30.0, half_open_calls=2),
        **kw,  # type: ignore[arg-type]
    )
    return Router(config, clock=clock, rng=random.Random(seed)), clock


def run(router: Router, model: str, outcome: Callable[[str], Outcome], n: int) -> Counter[str]:
    """``n`` sequential requests, each to the first planned backend."""
    picks: Counter[str] = Counter()
    for _ in range(n):
        plan = router.plan(model)
        assert plan
        router.start(plan[0])
        router.finish(plan[0], outcome(plan[0].name))
        picks[plan[0].name] += 1
    return picks


OK = Outcome(True, 0.01)


# -- registry ----------------------------------------------------------------------------


def test_registry_has_exactly_the_contract_names() -> None:
    assert sorted(STRATEGIES) == sorted(STRATEGY_NAMES)
    with pytest.raises(ConfigError, match="already registered"):
        register_strategy("p2c-ewma", STRATEGIES["p2c-ewma"])


def test_unknown_strategy_lists_the_known_ones() -> None:
    from workbench.router.balancer import make_strategy
    from workbench.router.learning import ThompsonLearner

    router, _ = make()
    with pytest.raises(ConfigError, match="known strategies: cost, least-outstanding"):
        make_strategy("fastest", router.config, ThompsonLearner())


# -- contract: every strategy ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(STRATEGY_NAMES))
def test_every_strategy_plans_only_available_backends_of_the_model(name: str) -> None:
    router, clock = make(
        backend("a", "chat"),
        backend("b", "chat"),
        backend("c", "chat", "other"),
        backend("d", "other"),
        strategy=name,
    )
    assert router.plan("nope") == []
    for _ in range(30):
        plan = router.plan("chat", text="hello")
        assert sorted(s.name for s in plan) == ["a", "b", "c"]
        router.start(plan[0])
        router.finish(plan[0], OK)
    assert all(s.outstanding == 0 for s in router.backends)
    # Take b out three ways: ejected, breaker open, unhealthy; and exclude a.
    router.backend("b").ejected_until = clock.now + 5
    assert "b" not in {s.name for s in router.plan("chat")}
    router.backend("b").ejected_until = -math.inf
    router.backend("b").breaker.open()
    assert "b" not in {s.name for s in router.plan("chat")}
    router.backend("b").breaker.close()
    router.backend("b").healthy = False
    assert [s.name for s in router.plan("chat", exclude=["a"])] == ["c"]
    router.backend("b").healthy = True
    # Saturated: max_concurrency reached.
    full = router.backend("c")
    for _ in range(full.config.max_concurrency):
        router.start(full)
    assert "c" not in {s.name for s in router.plan("chat")}
    assert [s.name for s in router.plan("other")] == ["d"]


# -- the strategies themselves -----------------------------------------------------------


def test_round_robin_takes_turns_per_model() -> None:
    router, _ = make(strategy="round-robin")
    order = [router.plan("chat")[0].name for _ in range(6)]
    assert order == ["a", "b", "c", "a", "b", "c"]


def test_weighted_follows_the_weights() -> None:
    """6000 picks with weights 1:2:3; each count within 5 sd of its binomial mean (a false
    failure has probability < 1e-5 per count; fixed seed). Power: uniform picks put a at
    2000, 24 sd from its mean of 1000."""
    router, _ = make(
        backend("a", weight=1.0),
        backend("b", weight=2.0),
        backend("c", weight=3.0),
        strategy="weighted",
    )
    picks = Counter(router.plan("chat")[0].name for _ in range(6000))
    for name, p in (("a", 1 / 6), ("b", 2 / 6), ("c", 3 / 6)):
        mean, sd = 6000 * p, math.sqrt(6000 * p * (1 - p))
        assert abs(picks[name] - mean) < 5 * sd, picks


def test_least_outstanding_picks_the_least_busy() -> None:
    router, _ = make(strategy="least-outstanding")
    a, _, c = router.backends
    router.start(a)
    router.start(a)
    router.start(c)
    assert {router.plan("chat")[0].name for _ in range(20)} == {"b"}


def test_p2c_prefers_low_latency_times_load() -> None:
    router, clock = make(strategy="p2c-ewma")
    latency = {"a": 0.01, "b": 0.05, "c": 0.2}
    run(router, "chat", lambda n: Outcome(True, latency[n]), 300)  # learn the latencies
    clock.advance(0.001)
    # Against any other, c loses; a wins both of its pairings: a gets 2/3, c next to nothing.
    picks = run(router, "chat", lambda n: Outcome(True, latency[n]), 600)
    assert picks["a"] > 0.55 * 600 and picks["c"] < 0.05 * 600, picks


@pytest.mark.parametrize("status", [500, 503, 429, None])
def test_p2c_penalises_fast_errors(status: int | None) -> None:
    """A backend answering errors in 1 ms must lose traffic to one answering in 50 ms, not
    win it as the fastest. (If errors counted as fast samples, a would take most traffic.)
    The breaker and the outlier detector are kept out of the way: the score alone must do it."""
    never = BreakerConfig(size=1000, min_calls=1000)
    router, _ = make(backend("a"), backend("b"), strategy="p2c-ewma", breaker=never)
    router.outlier = OutlierDetector(consecutive=10**6)
    bad = Outcome(False, 0.001, status=status)
    picks = run(router, "chat", lambda n: bad if n == "a" else Outcome(True, 0.05), 200)
    assert picks["a"] < 0.1 * 200, picks
    assert router.backend("a").error_rate > 0.0


def test_p2c_error_penalty_lapses_after_one_cooldown() -> None:
    """A run of errors must not compound into a penalty that outlives the outage: once the
    cooldown (the breaker's open_s) has passed, a recovered backend takes its share again.
    With the penalty compounding (5x the average per error) a stayed near zero for minutes."""
    never = BreakerConfig(size=1000, min_calls=1000, open_s=30.0)
    router, clock = make(strategy="p2c-ewma", breaker=never)
    router.outlier = OutlierDetector(consecutive=10**6)
    run(router, "chat", lambda n: Outcome(True, 0.01), 60)
    for _ in range(30):  # a fails every request sent to it, directly
        a = router.backend("a")
        router.start(a)
        router.finish(a, Outcome(False, 0.001, status=500))
        clock.advance(0.01)
    during = run(router, "chat", lambda n: Outcome(True, 0.01), 300)
    assert during["a"] == 0, during  # it loses every pairing while penalised
    clock.advance(30.0)  # one cooldown later, a answers normally again
    after = run(router, "chat", lambda n: Outcome(True, 0.01), 600)
    # Equal latencies: a third each; below a fifth would mean the penalty outlived its
    # cooldown (P2C ties at equal cost go to the first pick, so the split is even).
    assert after["a"] > 0.2 * 600, after


def test_least_outstanding_breaks_ties_by_latency() -> None:
    """At low load every backend has nothing in flight; the tie goes to the faster one (so a
    slow backend does not keep its full share), and in-flight counts still come first."""
    router, _ = make(strategy="least-outstanding")
    latency = {"a": 0.01, "b": 0.2, "c": 0.05}
    for s in router.backends:
        router.start(s)
        router.finish(s, Outcome(True, latency[s.name]))
    assert {router.plan("chat")[0].name for _ in range(20)} == {"a"}
    a = router.backend("a")
    router.start(a)
    assert {router.plan("chat")[0].name for _ in range(20)} == {"c"}


def test_an_ejection_never_outlasts_one_open_wait() -> None:
    """However long a backend keeps failing, the default outlier detector's doubling
    ejections stop at the breaker's open_s, so a recovered backend is back within one."""
    router, clock = make(breaker=BreakerConfig(size=1000, min_calls=1000, open_s=30.0))
    a = router.backend("a")
    longest = 0.0
    for _ in range(12):  # twelve ejections in a row: 10, 20, 30, 30, ... s
        for _ in range(router.outlier.consecutive):
            clock.advance(max(0.0, a.ejected_until - clock.now) + 0.001)
            router.start(a)
            router.finish(a, Outcome(False, 0.001, status=503))
        longest = max(longest, a.ejected_until - clock.now)
    assert a.ejections >= 3 and longest == pytest.approx(30.0), (a.ejections, longest)


def test_cost_picks_the_cheapest_then_the_fastest() -> None:
    router, _ = make(
        backend("dear", cost_per_1k_tokens=5.0),
        backend("cheap1", cost_per_1k_tokens=0.5),
        backend("cheap2", cost_per_1k_tokens=0.5),
        strategy="cost",
    )
    assert {router.plan("chat")[0].name for _ in range(40)} == {"cheap1", "cheap2"}
    lat = {"cheap1": 0.3, "cheap2": 0.1, "dear": 0.01}
    run(router, "chat", lambda n: Outcome(True, lat[n]), 20)
    for s in router.backends:  # both cheap ones have a latency now
        router.start(s)
        router.finish(s, Outcome(True, lat[s.name]))
    assert {router.plan("chat")[0].name for _ in range(20)} == {"cheap2"}
    assert router.plan("chat")[-1].name != "cheap2"


def test_slow_backend_loses_traffic_under_concurrent_load() -> None:
    """Open-loop arrivals at 300 req/s for 5 simulated seconds; backend c takes 10x longer
    (100 ms vs 10 ms). Least-outstanding and P2C-EWMA must send it under 20 % of requests
    (the issue's bar: 80 % moved away within 5 s); round-robin sends it a third (power)."""

    def share(strategy: str) -> float:
        router, clock = make(strategy=strategy, seed=4)
        service = {"a": 0.01, "b": 0.01, "c": 0.1}
        rng = random.Random(9)
        events: list[tuple[float, int, str]] = []
        seq, sent, slow = 0, 0, 0
        t = clock.now
        end = t + 5.0
        while t < end or events:
            if t < end and (not events or t <= events[0][0]):
                clock.now = t
                s = router.plan("chat")[0]
                router.start(s)
                latency = service[s.name] * rng.uniform(0.8, 1.2)
                heapq.heappush(events, (t + latency, seq, s.name))
                seq += 1
                sent += 1
                slow += s.name == "c"
                t += rng.expovariate(300.0)
            else:
                done, _, name = heapq.heappop(events)
                clock.now = done
                router.finish(router.backend(name), Outcome(True, service[name]))
        return slow / sent

    assert share("least-outstanding") < 0.2
    assert share("p2c-ewma") < 0.2
    assert share("round-robin") > 0.3


# -- breakers, cooldowns, fallbacks ------------------------------------------------------


def test_an_open_breaker_excludes_then_readmits_with_bounded_probes() -> None:
    router, clock = make(backend("a"), backend("b"), strategy="round-robin")
    a = router.backend("a")
    for _ in range(4):  # min_calls=4, all failed: opens
        router.start(a)
        router.finish(a, Outcome(False, 0.01, status=502))
    assert a.breaker.state == "OPEN"
    assert {s.name for s in router.plan("chat")} == {"b"}
    assert router.snapshot()["a"]["state"] == "cooling"
    clock.advance(30.0)  # open_s: never left excluded after its cooldown
    assert "a" in {s.name for s in router.plan("chat")}
    # Two probes (half_open_calls=2) may be out at once, no more.
    router.start(a)
    router.start(a)
    assert "a" not in {s.name for s in router.plan("chat")}
    router.finish(a, OK)
    router.finish(a, OK)
    assert a.breaker.state == "CLOSED"
    assert "a" in {s.name for s in router.plan("chat")}


def test_a_failed_probe_reopens_and_the_next_cooldown_readmits_again() -> None:
    router, clock = make(backend("a"), backend("b"))
    a = router.backend("a")
    for _ in range(4):
        router.start(a)
        router.finish(a, Outcome(False, 0.01, status=500))
    for _ in range(3):
        clock.advance(30.0)
        assert "a" in {s.name for s in router.plan("chat")}
        router.start(a)
        router.finish(a, Outcome(False, 0.01, status=500))
        assert a.breaker.state == "OPEN"
    clock.advance(30.0)
    assert "a" in {s.name for s in router.plan("chat")}


def test_retry_after_keeps_the_breaker_open_longer() -> None:
    router, clock = make(backend("a"), backend("b"))
    a = router.backend("a")
    for _ in range(4):
        router.start(a)
        router.finish(a, Outcome(False, 0.01, status=429, retry_after_s=120.0))
    clock.advance(60.0)
    assert "a" not in {s.name for s in router.plan("chat")}
    assert router.time_to_first_available("chat") == 0.0  # b is there
    clock.advance(60.0)
    assert "a" in {s.name for s in router.plan("chat")}


def test_client_errors_are_not_the_backends_fault() -> None:
    router, _ = make(backend("a"), backend("b"))
    a = router.backend("a")
    for _ in range(20):
        router.start(a)
        router.finish(a, Outcome(False, 0.001, status=400))
    assert a.breaker.state == "CLOSED" and a.error_rate == 0.0 and a.requests == 0
    assert a.outstanding == 0 and a.ewma_latency_s == 0.0


def test_cancel_releases_without_a_verdict() -> None:
    router, _ = make(backend("a"), backend("b"))
    a = router.backend("a")
    for _ in range(10):
        router.start(a)
        router.cancel(a)
    assert a.outstanding == 0 and a.breaker.snapshot()["calls"] == 0


def test_time_to_first_available_when_everything_cools() -> None:
    router, clock = make(backend("a"), backend("b"))
    assert router.time_to_first_available("nope") is None
    assert router.time_to_first_available("chat") == 0.0
    router.backend("a").breaker.open()  # 30 s
    clock.advance(10.0)
    router.backend("b").ejected_until = clock.now + 5.0
    assert router.plan("chat") == []
    assert router.known("chat")
    assert router.time_to_first_available("chat") == pytest.approx(5.0)
    clock.advance(5.0)
    assert [s.name for s in router.plan("chat")] == ["b"]
    router.backend("b").healthy = False
    assert router.time_to_first_available("chat") == pytest.approx(15.0)


def test_fallback_chain_follows_the_alias_order() -> None:
    router, _ = make(
        backend("pro1", "claude", aliases=("planner-pro",)),
        backend("fast1", "mini", aliases=("planner-fast",)),
        backend("local", "llama", aliases=("local-general",)),
        fallbacks={"planner-pro": ("planner-fast", "local-general")},
    )
    assert [s.name for s in router.plan("planner-pro")] == ["pro1", "fast1", "local"]
    assert [s.name for s in router.plan("planner-pro", exclude=["pro1"])] == ["fast1", "local"]
    router.backend("pro1").breaker.open()
    assert [s.name for s in router.plan("planner-pro")] == ["fast1", "local"]
    assert router.models() == sorted(
        ["claude", "planner-pro", "mini", "planner-fast", "llama", "local-general"]
    )


def test_per_model_strategy_override() -> None:
    router, _ = make(
        backend("a", "chat", "code"),
        backend("b", "chat", "code"),
        strategy="p2c-ewma",
        strategies={"code": "round-robin"},
    )
    assert router.strategy("code").name == "round-robin"
    assert router.strategy("chat").name == "p2c-ewma"
    assert [router.plan("code")[0].name for _ in range(4)] == ["a", "b", "a", "b"]


# -- passive outlier ejection ------------------------------------------------------------


def _fail(router: Router, name: str, n: int, status: int | None = 500) -> None:
    s = router.backend(name)
    for _ in range(n):
        router.start(s)
        router.finish(s, Outcome(False, 0.01, status=status))


def test_consecutive_errors_eject_for_a_growing_capped_time() -> None:
    big = BreakerConfig(min_calls=1000, size=1000)  # keep the breaker out of the way
    router, clock = make(
        backend("a"),
        backend("b"),
        breaker=big,
    )
    router.outlier = OutlierDetector(consecutive=3, base_s=10.0, max_s=35.0)
    a = router.backend("a")
    lengths = []
    for _ in range(4):
        _fail(router, "a", 2)
        assert a.ejected_until <= clock.now  # 2 in a row: not yet
        _fail(router, "a", 1)
        lengths.append(a.ejected_until - clock.now)
        assert [s.name for s in router.plan("chat")] == ["b"]
        clock.advance(lengths[-1])  # the ejection ends by itself
        assert "a" in {s.name for s in router.plan("chat")}
    assert lengths == [10.0, 20.0, 35.0, 35.0]
    # A long quiet spell resets the count.
    clock.advance(35.0)
    _fail(router, "a", 3)
    assert a.ejected_until - clock.now == 10.0


def test_success_and_non_5xx_errors_reset_or_skip_the_streak() -> None:
    router, clock = make(backend("a"), backend("b"), breaker=BreakerConfig(min_calls=20))
    router.outlier = OutlierDetector(consecutive=3)
    a = router.backend("a")
    _fail(router, "a", 2)
    router.start(a)
    router.finish(a, OK)
    _fail(router, "a", 2)
    _fail(router, "a", 5, status=429)  # rate limiting is not an outlier signal
    _fail(router, "a", 5, status=404)
    assert a.ejected_until < clock.now and a.ejections == 0
    _fail(router, "a", 3, status=None)  # transport errors are
    assert a.ejected_until > clock.now


def test_never_ejects_the_last_backend_of_a_model() -> None:
    router, clock = make(
        backend("a", "chat"),
        backend("b", "chat"),
        backend("solo", "rare"),
        breaker=BreakerConfig(min_calls=100, size=100),
    )
    router.outlier = OutlierDetector(consecutive=2)
    _fail(router, "a", 2)
    assert router.backend("a").ejected_until > clock.now
    _fail(router, "b", 10)
    assert router.backend("b").ejected_until < clock.now  # a is out: b stays
    _fail(router, "solo", 10)
    assert router.backend("solo").ejected_until < clock.now
    assert [s.name for s in router.plan("chat")] == ["b"]


def test_snapshot_reports_each_backend() -> None:
    router, _ = make()
    run(router, "chat", lambda n: OK, 5)
    snap = router.snapshot()
    assert set(snap) == {"a", "b", "c"}
    assert snap["a"]["state"] == "available"
    assert sum(v["requests"] for v in snap.values()) == 5
    assert {"breaker", "outstanding", "ewma_latency_s", "error_rate"} <= set(snap["a"])
    assert snap["a"]["breaker"]["state"] == "CLOSED"


@pytest.mark.parametrize("strategy", sorted(STRATEGY_NAMES))
def test_no_backend_stays_excluded_after_its_cooldowns(strategy: str) -> None:
    """200 seeded random histories of failures, 429s with Retry-After, successes, client
    errors, cancellations and clock steps; then, once the longest wait (breaker open wait
    with Retry-After, ejection) has passed, every backend is planned again (breakers let
    their probes through; ejections have ended)."""
    rng = random.Random(strategy)
    kinds = [
        Outcome(False, 0.01, status=500),
        Outcome(False, 0.0, status=None),
        Outcome(False, 0.01, status=429, retry_after_s=45.0),
        Outcome(False, 0.01, status=400),
        OK,
    ]
    for _ in range(200):
        router, clock = make(strategy=strategy, seed=rng.randrange(1 << 30))
        router.outlier = OutlierDetector(consecutive=3, base_s=5.0, max_s=60.0)
        for _ in range(rng.randrange(10, 60)):
            s = rng.choice(router.backends)
            router.start(s)
            if rng.random() < 0.1:
                router.cancel(s)
            else:
                router.finish(s, rng.choice(kinds))
            clock.advance(rng.choice([0.0, 0.5, 3.0]))
        assert all(s.outstanding == 0 for s in router.backends)
        clock.advance(300.0)  # the breaker's max_open_s; ejections are capped at 60 s
        assert sorted(s.name for s in router.plan("chat")) == ["a", "b", "c"]
