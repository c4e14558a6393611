"""Zipf workloads under the independent reference model, and the hit rates theory predicts.

The notebook ``notebooks/06_cache.ipynb`` drives a real :class:`~workbench.cache.Cache` with
these traces and checks its hit rates against the formulas below.

**The workload.** A catalog of ``n_items`` items with Zipf popularity ``p_i ∝ i^-alpha``
(``i = 1..n``). Under the independent reference model (IRM) every request names item ``i``
with probability ``p_i``, independently of all the others; in time, requests arrive as a
Poisson process of total rate ``rate``, so item ``i`` is requested at Poisson rate
``l_i = rate * p_i``, independently of the other items (Poisson thinning).

**LRU of capacity C entries: Che's approximation.** Item ``i`` is in an LRU cache when it was
requested more recently than the C-th most recent distinct *other* item. Che, Tung and Wang
(IEEE JSAC 20(7), 2002, "Hierarchical Web caching systems: modeling, design and experimental
results") replace that random time by a constant, the characteristic time ``t_C``, the root of
``sum_i (1 - exp(-p_i t_C)) = C`` (in units of requests), so that

    h_i = 1 - exp(-p_i t_C),    h = sum_i p_i h_i.

Fricker, Robert and Roberts (ITC 24, 2012, "A versatile and accurate approximation for LRU
cache performance") explain why it is accurate and becomes exact as the catalog grows. The
exact IRM hit rate is the integral of Flajolet, Gardy and Thimonier (Discrete Applied Math.
39, 1992): with every item requested as an independent Poisson process, the time since item
``i``'s previous request is ``Exp(p_i)`` and, given that time ``t``, each other item was
requested in it independently with probability ``1 - exp(-p_j t)``; the request is a hit iff
fewer than C of them were, so

    h_i = integral_0^inf p_i exp(-p_i t) P(X_{-i}(t) <= C - 1) dt,

``X_{-i}(t)`` a Poisson-binomial count over the other items. :func:`lru_hit_rate_exact`
evaluates it with a rigorous bracket, which is how the notebook measures Che's error.

**A TTL cache, cache-aside, no refresh on hit.** A miss fetches the item and stores it for
``T`` seconds; hits do not extend it. With requests to item ``i`` Poisson at rate ``l_i``,
the item's history is a renewal process whose cycle is a miss, the ``N ~ Poisson(l_i T)``
hits that follow within ``T``, then an ``Exp(l_i)`` wait for the next request (a miss,
memorylessness). By the renewal-reward theorem the long-run fraction of hits is
``E[N] / (1 + E[N])``:

    h_i = l_i T / (1 + l_i T),    h = sum_i p_i h_i

(Jung, Berger and Balakrishnan, INFOCOM 2003, "Modeling TTL-based Internet caches"). This is
exact for Poisson arrivals, not an approximation. The same renewal argument gives the
stationary state (:func:`ttl_steady_state`): the item is cached with probability
``l_i T / (1 + l_i T)`` (fraction of time in the live part of a cycle) and, if so, its
remaining lifetime is uniform on ``(0, T)``. :func:`lru_steady_state` does the same for LRU
(the C most recently requested distinct items are the C smallest of independent
``Exp(p_i)`` times back from now), so a replay can start in steady state with no warm-up bias.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

from workbench.errors import InputError

__all__ = [
    "TraceClock",
    "ZipfWorkload",
    "che_characteristic_time",
    "che_hit_rate",
    "lru_hit_rate_exact",
    "lru_steady_state",
    "replay_cache_aside",
    "ttl_hit_rate",
    "ttl_steady_state",
    "zipf_popularity",
]


def zipf_popularity(n_items: int, alpha: float) -> np.ndarray:
    """Zipf probabilities ``p_i ∝ i^-alpha`` for ``i = 1..n_items``.

    Returns:
        Shape ``(n_items,)``, float64, decreasing, summing to 1.
    """
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
        raise InputError(
            f"n_items: must be an int >= 1, got {n_items!r}", details={"field": "n_items"}
        )
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 10:
        raise InputError(
            f"alpha: must be a number in [0, 10], got {alpha!r}", details={"field": "alpha"}
        )
    w = np.arange(1, n_items + 1, dtype=np.float64) ** -float(alpha)
    return w / w.sum()


@dataclass(frozen=True)
class ZipfWorkload:
    """An IRM request stream over a Zipf catalog.

    Attributes:
        n_items: Catalog size.
        alpha: Zipf exponent (0 is uniform).
        rate: Requests per second of the whole stream (Poisson).
    """

    n_items: int
    alpha: float
    rate: float = 1000.0

    def __post_init__(self) -> None:
        zipf_popularity(self.n_items, self.alpha)  # validates both
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float):
            raise InputError(
                f"rate: must be a number, got {self.rate!r}", details={"field": "rate"}
            )
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise InputError(
                f"rate: must be a positive number of requests per second, got {self.rate!r}",
                details={"field": "rate"},
            )

    @property
    def popularity(self) -> np.ndarray:
        """``p``, shape ``(n_items,)``."""
        return zipf_popularity(self.n_items, self.alpha)

    @property
    def rates(self) -> np.ndarray:
        """Per-item request rates ``l_i = rate * p_i`` (1/s), shape ``(n_items,)``."""
        return self.rate * self.popularity

    def trace(self, n_requests: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(items, times)``: ``n_requests`` IRM requests and their Poisson arrival times.

        Returns:
            ``items`` int64 in ``[0, n_items)`` and ``times`` float64 seconds (increasing,
            from the first arrival after 0), both of shape ``(n_requests,)``.
        """
        if isinstance(n_requests, bool) or not isinstance(n_requests, int) or n_requests < 0:
            raise InputError(
                f"n_requests: must be an int >= 0, got {n_requests!r}",
                details={"field": "n_requests"},
            )
        items = rng.choice(self.n_items, size=n_requests, p=self.popularity)
        times = np.cumsum(rng.exponential(1.0 / self.rate, size=n_requests))
        return items.astype(np.int64), times


def _check_capacity(p: np.ndarray, capacity: int) -> None:
    if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer) or capacity < 1:
        raise InputError(
            f"capacity: must be an int >= 1 entries, got {capacity!r}",
            details={"field": "capacity"},
        )
    if p.ndim != 1 or len(p) < 1 or not np.all(p > 0) or not math.isclose(p.sum(), 1.0):
        raise InputError(
            "popularity: must be a 1-d array of positive probabilities summing to 1",
            details={"field": "popularity"},
        )


def _distinct(p: np.ndarray, t: np.ndarray | float) -> Any:
    """Expected number of distinct items among Poisson(t) requests: ``sum_i 1 - e^{-p_i t}``."""
    return -np.expm1(-np.multiply.outer(np.asarray(t, dtype=np.float64), p)).sum(axis=-1)


def che_characteristic_time(popularity: np.ndarray, capacity: int) -> float:
    """Che's ``t_C`` (in requests): the root of ``sum_i (1 - exp(-p_i t)) = C``.

    ``inf`` when the catalog fits (``capacity >= n_items``).
    """
    p = np.asarray(popularity, dtype=np.float64)
    _check_capacity(p, capacity)
    if capacity >= len(p):
        return math.inf
    hi = 1.0
    while _distinct(p, hi) < capacity:
        hi *= 2.0
    return float(brentq(lambda t: _distinct(p, t) - capacity, 0.0, hi, xtol=1e-12, rtol=1e-13))


def che_hit_rate(popularity: np.ndarray, capacity: int) -> float:
    """Che's approximation of the IRM hit rate of an LRU cache of ``capacity`` entries."""
    p = np.asarray(popularity, dtype=np.float64)
    t_c = che_characteristic_time(p, capacity)
    if math.isinf(t_c):
        return 1.0
    return float(np.sum(p * -np.expm1(-p * t_c)))


def lru_hit_rate_exact(
    popularity: np.ndarray, capacity: int, *, grid: int = 160, spread: float = 12.0
) -> tuple[float, float]:
    """Rigorous bounds ``(low, high)`` on the exact IRM hit rate of LRU (module docstring).

    Integrating by parts, ``h_i = E[1 - exp(-p_i tau_i)]`` where ``tau_i`` has survival
    function ``f_i(t) = P(X_{-i}(t) <= C - 1)`` (decreasing in ``t``). On a grid
    ``0 = t_0 < ... < t_G`` the integrand ``1 - exp(-p_i t)`` is increasing, so summing it
    at the left (right) end of each cell, weighted by the cell's drop of ``f_i``, bounds
    ``h_i`` from below (above); the mass beyond ``t_G`` counts 0 below and 1 above. The grid
    is uniform in the expected distinct count ``m(t)`` over ``C ± spread sqrt(C)``, where
    ``f_i`` falls from 1 to 0. ``f_i`` comes from a truncated Poisson-binomial recursion over
    the items before and after ``i`` (sums of positive terms only: no cancellation).

    Cost: about ``6 * grid * n_items * capacity`` flops (a second for 1,000 items and
    C = 300).

    Args:
        popularity: ``p``, shape ``(n,)``.
        capacity: ``C`` entries.
        grid: Cells of the integration grid.
        spread: Half-width of the grid in standard deviations (sqrt(C)) of the count.
    """
    p = np.asarray(popularity, dtype=np.float64)
    _check_capacity(p, capacity)
    n, c = len(p), int(capacity)
    if c >= n:
        return 1.0, 1.0
    t_c = che_characteristic_time(p, c)
    # m(t) on a log-spaced table; invert it to put the grid where f_i falls
    table = t_c * np.geomspace(1e-6, 1e6, 4001)
    m_table = _distinct(p, table)
    lo_m = max(c - spread * math.sqrt(c), m_table[0])
    hi_m = min(c + spread * math.sqrt(c), n - 1e-9, m_table[-1])
    t = np.concatenate(([0.0], np.interp(np.linspace(lo_m, hi_m, grid), m_table, table)))
    t = np.maximum.accumulate(t)
    f = np.empty((len(t), n))
    chunk = max(1, int(8e6 // (n * c)))
    for start in range(0, len(t), chunk):
        f[start : start + chunk] = _survival(p, c, t[start : start + chunk])
    f = np.minimum(f, 1.0)
    drop = np.clip(f[:-1] - f[1:], 0.0, None)  # (G, n)
    g = -np.expm1(-np.multiply.outer(t, p))  # (G + 1, n)
    low_i = (g[:-1] * drop).sum(axis=0) + g[-1] * f[-1]
    high_i = (g[1:] * drop).sum(axis=0) + f[-1]
    return float(p @ low_i), float(min(1.0, p @ high_i))


def _survival(p: np.ndarray, c: int, t: np.ndarray) -> np.ndarray:
    """``P(X_{-i}(t) <= c - 1)`` for every ``t`` (rows) and item ``i`` (columns)."""
    n, g = len(p), len(t)
    q = -np.expm1(-np.multiply.outer(t, p))  # (g, n): P(item j requested within t)
    prefix = np.empty((n, g, c))  # pmf of items 0..i-1, truncated to counts 0..c-1
    cur = np.zeros((g, c))
    cur[:, 0] = 1.0
    for i in range(n):
        prefix[i] = cur
        qi = q[:, i : i + 1]
        nxt = cur * (1.0 - qi)
        nxt[:, 1:] += cur[:, :-1] * qi
        cur = nxt
    out = np.empty((g, n))
    cur = np.zeros((g, c))  # pmf of items i+1..n-1
    cur[:, 0] = 1.0
    for i in range(n - 1, -1, -1):
        cdf = np.cumsum(cur, axis=1)
        out[:, i] = np.einsum("gk,gk->g", prefix[i], cdf[:, ::-1])
        qi = q[:, i : i + 1]
        nxt = cur * (1.0 - qi)
        nxt[:, 1:] += cur[:, :-1] * qi
        cur = nxt
    return out


def ttl_hit_rate(rates: np.ndarray, ttl_s: float, popularity: np.ndarray | None = None) -> float:
    """Exact hit rate of a cache-aside TTL cache without refresh on hit, Poisson requests.

    Args:
        rates: Per-item request rates ``l_i`` (1/s), shape ``(n,)``.
        ttl_s: ``T``, seconds.
        popularity: Weights of the items in the request mix; ``rates / rates.sum()`` by
            default (right for a Poisson stream split by item).
    """
    lam = np.asarray(rates, dtype=np.float64)
    if not (isinstance(ttl_s, int | float) and math.isfinite(ttl_s) and ttl_s > 0):
        raise InputError(f"ttl_s: must be a positive number, got {ttl_s!r}")
    w = lam / lam.sum() if popularity is None else np.asarray(popularity, dtype=np.float64)
    x = lam * ttl_s
    return float(np.sum(w * x / (1.0 + x)))


def lru_steady_state(popularity: np.ndarray, capacity: int, rng: np.random.Generator) -> np.ndarray:
    """A draw of an LRU cache's stationary contents under IRM.

    Returns:
        The ``min(capacity, n)`` cached items, least recently used first (the order in which
        to insert them).
    """
    p = np.asarray(popularity, dtype=np.float64)
    _check_capacity(p, capacity)
    back = rng.exponential(size=len(p)) / p  # time back to each item's last request
    order = np.argsort(back)[: min(int(capacity), len(p))]
    return order[::-1].copy()


def ttl_steady_state(
    rates: np.ndarray, ttl_s: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A draw of a TTL cache's stationary contents (no refresh on hit, Poisson requests).

    Returns:
        ``(items, remaining_s)``: the cached items and the seconds each has left.
    """
    lam = np.asarray(rates, dtype=np.float64)
    x = lam * ttl_s
    cached = np.flatnonzero(rng.random(len(lam)) < x / (1.0 + x))
    return cached, ttl_s * (1.0 - rng.random(len(cached)))  # in (0, T]: a TTL must be > 0


class TraceClock:
    """A clock set by the replay (``now`` seconds), injected into a cache as its clock."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now


def replay_cache_aside(
    cache: Any,
    items: np.ndarray,
    keys: Sequence[str],
    value: Any,
    *,
    ttl_s: float | None = None,
    times: np.ndarray | None = None,
    clock: TraceClock | None = None,
    on_request: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Send a trace through ``cache`` as cache-aside: ``get``, and on a miss ``set``.

    Args:
        cache: A :class:`~workbench.cache.Cache` (any object with ``get``/``set``).
        items: Item of each request, shape ``(n,)``.
        keys: Key of each item.
        value: What a miss stores (never ``None``: ``None`` reads as a miss).
        ttl_s: TTL of each store; ``None`` uses the cache's default.
        times: Arrival time of each request (seconds), with ``clock``: the clock is set to
            it before the request.
        clock: The cache's injected clock.
        on_request: Called with each request's index before it is sent (progress, faults).

    Returns:
        Whether each request hit, bool of shape ``(n,)``.
    """
    if value is None:
        raise InputError("value: None reads as a miss; store something else")
    if (times is None) != (clock is None):
        raise InputError("times and clock go together: pass both or neither")
    get, put = cache.get, cache.set
    hits = np.zeros(len(items), dtype=bool)
    names = [keys[i] for i in items.tolist()]
    stamps = times.tolist() if times is not None else None
    for n, key in enumerate(names):
        if on_request is not None:
            on_request(n)
        if stamps is not None and clock is not None:
            clock.now = stamps[n]
        if get(key) is None:
            put(key, value, ttl_s)
        else:
            hits[n] = True
    return hits
