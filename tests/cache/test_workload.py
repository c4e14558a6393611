"""Tests of workbench/cache/workload.py: the Zipf IRM workload and the analytic hit rates.

The formulas are checked against exact enumeration (King's formula for LRU's stationary
distribution) and against plain-Python reference simulations that share no code with the
cache; the notebook ``notebooks/06_cache.ipynb`` then checks the real cache against them.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict

import numpy as np
import pytest
from scipy import stats

from workbench.cache import Cache
from workbench.cache.workload import (
    TraceClock,
    ZipfWorkload,
    che_characteristic_time,
    che_hit_rate,
    lru_hit_rate_exact,
    lru_steady_state,
    replay_cache_aside,
    ttl_hit_rate,
    ttl_steady_state,
    zipf_popularity,
)
from workbench.errors import InputError


def king_lru_hit_rate(p: np.ndarray, capacity: int) -> float:
    """Exact IRM hit rate of LRU by enumerating its stationary distribution (King, 1971):
    the ordered state (i_1..i_C), most recent first, has probability
    prod_k p_{i_k} / (1 - p_{i_1} - ... - p_{i_{k-1}})."""
    h = 0.0
    for state in itertools.permutations(range(len(p)), capacity):
        prob, used = 1.0, 0.0
        for i in state:
            prob *= p[i] / (1.0 - used)
            used += p[i]
        h += prob * used
    return h


def test_zipf_popularity_is_a_decreasing_distribution() -> None:
    p = zipf_popularity(100, 0.8)
    assert p.shape == (100,) and math.isclose(p.sum(), 1.0)
    assert np.all(np.diff(p) < 0)
    assert math.isclose(p[0] / p[9], 10**0.8)
    assert np.allclose(zipf_popularity(5, 0), 0.2)
    for bad in ({"n_items": 0, "alpha": 1.0}, {"n_items": 10, "alpha": -1.0}):
        with pytest.raises(InputError):
            zipf_popularity(**bad)
    with pytest.raises(InputError, match="rate"):
        ZipfWorkload(10, 1.0, rate=0.0)


@pytest.mark.parametrize(("n", "capacity", "alpha"), [(7, 1, 0.9), (7, 3, 0.9), (6, 4, 1.3)])
def test_exact_lru_brackets_kings_formula(n: int, capacity: int, alpha: float) -> None:
    p = zipf_popularity(n, alpha)
    exact = king_lru_hit_rate(p, capacity)
    low, high = lru_hit_rate_exact(p, capacity, grid=400)
    assert low <= exact <= high
    assert high - low < 0.01


def test_che_solves_its_equation_and_is_close_on_a_large_catalog() -> None:
    p = zipf_popularity(1000, 0.8)
    t_c = che_characteristic_time(p, 100)
    assert math.isclose(np.sum(1 - np.exp(-p * t_c)), 100.0, rel_tol=1e-9)
    low, high = lru_hit_rate_exact(p, 100)
    che = che_hit_rate(p, 100)
    assert max(abs(che - low), abs(che - high)) < 2e-3  # a proven bound on Che's error here
    assert che_hit_rate(p, 1000) == 1.0 and math.isinf(che_characteristic_time(p, 5000))
    assert che_hit_rate(p, 10) < che_hit_rate(p, 30) < che_hit_rate(p, 100)


def test_lru_steady_state_matches_the_exact_hit_rate() -> None:
    """Under IRM the hit rate equals the popularity mass of the cache's stationary contents.

    The mean over 4,000 independent draws of a quantity in [0, 1] is within 0.04 of its
    expectation except with probability 2 exp(-2 * 4000 * 0.04^2) = 5.5e-6 (Hoeffding):
    that is the false-failure rate. Power: C distinct items drawn uniformly would give
    C / n = 0.43 against the exact 0.55, 0.12 away.
    """
    p = zipf_popularity(7, 0.9)
    rng = np.random.default_rng(11)
    masses = []
    for _ in range(4000):
        state = lru_steady_state(p, 3, rng)
        assert len(set(state.tolist())) == 3
        masses.append(p[state].sum())
    assert abs(np.mean(masses) - king_lru_hit_rate(p, 3)) < 0.04


def _reference_lru(p: np.ndarray, capacity: int, n: int, rng: np.random.Generator) -> float:
    lru: OrderedDict[int, None] = OrderedDict(
        (int(i), None) for i in lru_steady_state(p, capacity, rng)
    )
    hits = 0
    for i in rng.choice(len(p), size=n, p=p).tolist():
        if i in lru:
            hits += 1
            lru.move_to_end(i)
        else:
            lru[i] = None
            if len(lru) > capacity:
                lru.popitem(last=False)
    return hits / n


def test_reference_lru_simulation_agrees_with_the_exact_rate() -> None:
    """A plain OrderedDict LRU, 40 independent replications of 2,000 requests from steady state.

    False-failure rate: the check is a two-sided t-test at level 1e-6 (39 degrees of freedom)
    plus the bracket's half-width. Power: with the capacity off by one (C = 9 or 11) the exact
    rate moves by about 0.029, over twice the tolerance (about 0.013) and 15 standard errors,
    so such a reference would fail with probability close to 1.
    """
    p = zipf_popularity(50, 0.8)
    rng = np.random.default_rng(5)
    rates = np.array([_reference_lru(p, 10, 2000, rng) for _ in range(40)])
    low, high = lru_hit_rate_exact(p, 10, grid=400)
    se = rates.std(ddof=1) / math.sqrt(len(rates))
    tol = stats.t.ppf(1 - 0.5e-6, len(rates) - 1) * se + (high - low) / 2
    assert abs(rates.mean() - (low + high) / 2) <= tol


def test_ttl_formula_against_a_reference_simulation() -> None:
    """One item at Poisson rate 2/s, TTL 0.7 s, no refresh on hit: h = 1.4 / 2.4.

    400,000 arrivals from a cold start; the first cycle's bias is below 1 / 400,000. The
    hit count's variance follows from the renewal-reward CLT: per cycle, hits N ~
    Poisson(l T) and length T + Exp(l), so the estimate's standard error is 0.00135; the
    tolerance 0.008 is 5.9 of them (false-failure rate below 1e-8). Power: the
    refresh-on-hit law 1 - exp(-l T) = 0.753 is 0.17 away.
    """
    rng = np.random.default_rng(3)
    lam, ttl = 2.0, 0.7
    times = np.cumsum(rng.exponential(1 / lam, size=400_000))
    hits, expires = 0, -1.0
    for t in times.tolist():
        if t < expires:
            hits += 1
        else:
            expires = t + ttl
    assert abs(hits / len(times) - ttl_hit_rate(np.array([lam]), ttl)) < 0.008
    assert math.isclose(ttl_hit_rate(np.array([lam]), ttl), 1.4 / 2.4)


def test_ttl_steady_state() -> None:
    """Each item is cached with probability lT/(1+lT). Over 20,000 draws the fraction for
    an item with lT = 1 (expected 0.5) is within 0.02 except with probability
    2 exp(-2 * 20000 * 0.02^2) = 2e-7 (Hoeffding)."""
    rng = np.random.default_rng(9)
    rates = np.array([10.0, 1.0, 0.01])
    counts = np.zeros(3)
    for _ in range(20_000):
        items, left = ttl_steady_state(rates, 1.0, rng)
        counts[items] += 1
        assert np.all((left > 0) & (left <= 1.0))
    assert abs(counts[1] / 20_000 - 0.5) < 0.02
    assert counts[0] > counts[1] > counts[2]


def test_workload_trace_shapes() -> None:
    w = ZipfWorkload(20, 1.0, rate=50.0)
    items, times = w.trace(1000, np.random.default_rng(0))
    assert items.shape == times.shape == (1000,) and items.dtype == np.int64
    assert items.min() >= 0 and items.max() < 20 and np.all(np.diff(times) > 0)
    assert math.isclose(w.rates.sum(), 50.0)


def test_replay_cache_aside_through_the_memory_cache() -> None:
    keys = ["a", "b", "c"]
    cache = Cache(None, namespace="replay")
    hits = replay_cache_aside(cache, np.array([0, 1, 0, 2, 0, 1]), keys, b"v")
    assert hits.tolist() == [False, False, True, False, True, True]

    clock = TraceClock()
    cache = Cache(None, namespace="replay", clock=clock)
    times = np.array([0.0, 0.5, 1.0, 1.6])
    hits = replay_cache_aside(
        cache, np.array([0, 0, 0, 0]), keys, b"v", ttl_s=1.0, times=times, clock=clock
    )
    assert hits.tolist() == [False, True, False, True]  # expired at exactly t = 1.0
    with pytest.raises(InputError):
        replay_cache_aside(cache, np.array([0]), keys, None)
    with pytest.raises(InputError):
        replay_cache_aside(cache, np.array([0]), keys, b"v", times=times)
