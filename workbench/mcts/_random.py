"""Seeded random numbers inside Numba kernels.

The generator is xoshiro256** (Blackman and Vigna, 2018) on a ``uint64[4]`` state array that
the caller owns and passes into every kernel, so a search replays exactly from its seed and
two searches never share hidden global state (Numba's own ``np.random`` is per-thread global
state, which would make replays depend on what else ran in the process).

Samplers: uniform on [0, 1), standard normal (ziggurat), gamma (Marsaglia and Tsang 2000,
with the ``U**(1/k)`` boost for shape < 1) and beta (Cheng's BB, or a ratio of gammas).
Every kernel here has a plain-Python twin in ``tests/mcts/naive.py``.

Numba's on-disk cache is keyed on each module's own source: kernels in other modules that
inline these functions are not recompiled when only this file changes. After editing it,
delete the ``__pycache__/*.nbi`` and ``*.nbc`` files of ``workbench/mcts``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = [
    "rng_beta",
    "rng_gamma",
    "rng_integers",
    "rng_normal",
    "rng_seed",
    "rng_uint64",
    "rng_uniform",
]


_U7 = np.uint64(7)
_U17 = np.uint64(17)
_U45 = np.uint64(45)
_U11 = np.uint64(11)
_U30 = np.uint64(30)
_U27 = np.uint64(27)
_U31 = np.uint64(31)
_U64 = np.uint64(64)
_FIVE = np.uint64(5)
_NINE = np.uint64(9)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_INV_2_53 = 1.0 / 9007199254740992.0
_LOG4 = math.log(4.0)
_CHENG_C = 1.0 + math.log(5.0)


@nb.njit(cache=True, nogil=True)
def _rotl(x: np.uint64, k: np.uint64) -> np.uint64:
    return (x << k) | (x >> (_U64 - k))


@nb.njit(cache=True, nogil=True)
def rng_seed(seed: int) -> np.ndarray:
    """A fresh ``uint64[4]`` state from an integer seed (SplitMix64 expansion)."""
    state = np.empty(4, dtype=np.uint64)
    z = np.uint64(seed & 0x7FFFFFFFFFFFFFFF)
    for i in range(4):
        z = z + _GOLDEN
        x = z
        x = (x ^ (x >> _U30)) * _MIX1
        x = (x ^ (x >> _U27)) * _MIX2
        state[i] = x ^ (x >> _U31)
    return state


@nb.njit(cache=True, nogil=True)
def rng_uint64(state: np.ndarray) -> np.uint64:
    """The next 64 random bits; advances ``state`` in place."""
    s0 = state[0]
    s1 = state[1]
    s2 = state[2]
    s3 = state[3]
    result = _rotl(s1 * _FIVE, _U7) * _NINE
    t = s1 << _U17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, _U45)
    state[0] = s0
    state[1] = s1
    state[2] = s2
    state[3] = s3
    return result


@nb.njit(cache=True, nogil=True)
def rng_uniform(state: np.ndarray) -> float:
    """Uniform on [0, 1) with 53 random bits."""
    return float(rng_uint64(state) >> _U11) * _INV_2_53


@nb.njit(cache=True, nogil=True)
def rng_integers(state: np.ndarray, n: int) -> int:
    """Uniform integer in ``[0, n)`` (``n >= 1``)."""
    return min(int(rng_uniform(state) * n), n - 1)


def _ziggurat_tables(layers: int = 128) -> np.ndarray:
    """Layer edges ``x[0..layers]`` of the normal ziggurat (Marsaglia and Tsang 2000)."""
    r = 3.442619855899
    v = 9.91256303526217e-3
    x = [v / math.exp(-0.5 * r * r), r]
    for _ in range(1, layers - 1):
        x.append(math.sqrt(-2.0 * math.log(v / x[-1] + math.exp(-0.5 * x[-1] * x[-1]))))
    x.append(0.0)
    return np.array(x, dtype=np.float64)


_ZX = _ziggurat_tables()
_ZR = 3.442619855899
_U127 = np.uint64(127)


@nb.njit(cache=True, nogil=True)
def rng_normal(state: np.ndarray) -> float:
    """Standard normal by the ziggurat method (128 layers; one 64-bit draw in the common
    case: 7 bits pick the layer, 53 bits the position)."""
    while True:
        bits = rng_uint64(state)
        i = int(bits & _U127)
        u = 2.0 * (float(bits >> _U11) * _INV_2_53) - 1.0
        z = u * _ZX[i]
        if abs(z) < _ZX[i + 1]:
            return z
        if i == 0:
            while True:
                a = -math.log(1.0 - rng_uniform(state)) / _ZR
                b = -math.log(1.0 - rng_uniform(state))
                if 2.0 * b > a * a:
                    return _ZR + a if u > 0 else -(_ZR + a)
        f0 = math.exp(-0.5 * _ZX[i] * _ZX[i])
        f1 = math.exp(-0.5 * _ZX[i + 1] * _ZX[i + 1])
        if f1 + rng_uniform(state) * (f0 - f1) < math.exp(-0.5 * z * z):
            return z


@nb.njit(cache=True, nogil=True)
def rng_gamma(state: np.ndarray, shape: float) -> float:
    """Gamma(shape, scale=1) by Marsaglia and Tsang; ``shape > 0``."""
    boost = 1.0
    if shape < 1.0:
        u = 1.0 - rng_uniform(state)
        boost = u ** (1.0 / shape)
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = rng_normal(state)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        u = 1.0 - rng_uniform(state)
        x2 = x * x
        if u < 1.0 - 0.0331 * x2 * x2:
            return d * v * boost
        if math.log(u) < 0.5 * x2 + d * (1.0 - v + math.log(v)):
            return d * v * boost


@nb.njit(cache=True, nogil=True)
def rng_beta(state: np.ndarray, a: float, b: float) -> float:
    """Beta(a, b): Cheng's algorithm BB (1978) when both shapes exceed 1 (one logistic
    proposal, usually accepted by a squeeze without a logarithm), else X / (X + Y) with
    X ~ Gamma(a), Y ~ Gamma(b)."""
    if a > 1.0 and b > 1.0:
        a0 = min(a, b)
        b0 = max(a, b)
        alpha = a0 + b0
        beta = math.sqrt((alpha - 2.0) / (2.0 * a0 * b0 - alpha))
        gamma = a0 + 1.0 / beta
        while True:
            u1 = rng_uniform(state)
            u2 = rng_uniform(state)
            if u1 <= 0.0 or u1 >= 1.0:
                continue
            v = beta * math.log(u1 / (1.0 - u1))
            w = a0 * math.exp(v) if v < 700.0 else math.inf
            z = u1 * u1 * u2
            r = gamma * v - _LOG4
            s = a0 + r - w
            if s + _CHENG_C >= 5.0 * z:
                break
            t = math.log(z) if z > 0.0 else -math.inf
            if s > t:
                break
            if r + alpha * math.log(alpha / (b0 + w)) >= t:
                break
        if math.isinf(w):
            return 1.0 if a0 == a else 0.0
        return w / (b0 + w) if a0 == a else b0 / (b0 + w)
    x = rng_gamma(state, a)
    y = rng_gamma(state, b)
    total = x + y
    if total <= 0.0:  # both underflowed (tiny shapes): fall back to the mean
        return a / (a + b)
    return x / total
