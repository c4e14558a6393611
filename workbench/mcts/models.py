"""Bayesian performance models of agents, per (agent, task type), with the platform's priors.

* success: Beta(1, 1), updated with 1 on success and 0 on failure (fractional rewards count
  fractionally);
* latency (ms): Normal-Gamma with ``mu 1000, kappa 0.001, a 1, b 500`` updated one
  observation at a time (``kappa' = kappa + 1``, ``mu' = (kappa mu + x)/kappa'``,
  ``a' = a + 1/2``, ``b' = b + kappa (x - mu)^2 / (2 kappa')``);
* resource usage (tokens): exponential usage with a Gamma(2, 1000) prior on its rate, so the
  expected usage ``(b + sum x) / (a + n - 1)`` starts at 1000 and can never become NaN (the
  platform's method-of-moments model did after one observation).

``expected_performance = 0.5 success + 0.3 / (1 + latency/1000) + 0.2 / (1 + usage/1000)``
and ``reliability = 0.7 min(1, n/30) + 0.3 consistency`` (consistency ``exp(-2 var)`` of the
last 10 success flags, 0 under 5 observations) as on the platform.

Updates are all-or-nothing: :meth:`AgentModel.update` computes every posterior first and
raises :class:`~workbench.errors.InputError` before changing anything when an observation is
out of range or would leave a parameter non-finite (a latency of 1e200 ms squares past the
largest float), and :meth:`ModelRegistry.update` keeps no model for an outcome it refused.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.errors import InputError, StorageFormatError

__all__ = [
    "AgentModel",
    "BetaPosterior",
    "ModelRegistry",
    "NormalGamma",
    "agent_type",
    "wilson_interval",
]

MODELS_FORMAT_VERSION = 1


def wilson_interval(p: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``p`` out of ``n``, clamped to [0, 1]."""
    if n <= 0:
        return 0.0, 1.0
    from statistics import NormalDist

    z = NormalDist().inv_cdf((1 + confidence) / 2)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class BetaPosterior:
    """Beta(alpha, beta) over a success probability."""

    alpha: float = 1.0
    beta: float = 1.0

    def update(self, success: float) -> None:
        """Add one observation in [0, 1] (1 success, 0 failure, fractions in between)."""
        self.alpha, self.beta = self.updated(success)

    def updated(self, success: float) -> tuple[float, float]:
        """``(alpha, beta)`` after :meth:`update` with ``success``; changes nothing.

        Raises:
            InputError: ``success`` is not in [0, 1].
        """
        if not 0.0 <= success <= 1.0:
            raise InputError(
                f"success: must be in [0, 1], got {success!r}", details=[{"field": "success"}]
            )
        return self.alpha + success, self.beta + (1.0 - success)

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def variance(self) -> float:
        s = self.alpha + self.beta
        return self.alpha * self.beta / (s * s * (s + 1))

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.beta(self.alpha, self.beta))


@dataclass
class NormalGamma:
    """Normal-Gamma posterior over the mean and precision of a Normal quantity."""

    mu: float = 1000.0
    kappa: float = 0.001
    a: float = 1.0
    b: float = 500.0

    def update(self, x: float) -> None:
        """Add one observation."""
        self.mu, self.kappa, self.a, self.b = self.updated(x)

    def updated(self, x: float, field: str = "observation") -> tuple[float, float, float, float]:
        """``(mu, kappa, a, b)`` after :meth:`update` with ``x``; changes nothing.

        Raises:
            InputError: ``x`` is not finite, or so far from ``mu`` that a parameter would
                overflow (naming ``field``).
        """
        if not math.isfinite(x):
            raise InputError(f"{field}: must be finite, got {x!r}", details=[{"field": field}])
        k1 = self.kappa + 1.0
        d = x - self.mu
        b = self.b + self.kappa * (d * d) / (2.0 * k1)  # d * d overflows to inf, never raises
        mu = (self.kappa * self.mu + x) / k1
        if not (math.isfinite(b) and math.isfinite(mu)):
            raise InputError(
                f"{field}: {x!r} is too far from the model's mean {self.mu!r} to be added",
                details=[{"field": field}],
            )
        return mu, k1, self.a + 0.5, b

    @property
    def mean(self) -> float:
        """Posterior mean of the mean."""
        return self.mu

    @property
    def variance(self) -> float:
        """Posterior variance of the mean, ``b / (kappa (a - 1))`` (inf when a <= 1)."""
        return self.b / (self.kappa * (self.a - 1.0)) if self.a > 1.0 else math.inf

    def predictive(self) -> tuple[float, float, float]:
        """Posterior predictive Student-t: ``(dof 2a, location mu, scale)``."""
        return 2.0 * self.a, self.mu, math.sqrt(self.b * (self.kappa + 1.0) / (self.a * self.kappa))

    def sample(self, rng: np.random.Generator) -> tuple[float, float]:
        """One draw of ``(mean, precision)``: ``tau ~ Gamma(a, rate b)``,
        ``mean ~ N(mu, 1 / (kappa tau))``."""
        tau = float(rng.gamma(self.a, 1.0 / self.b))
        return float(rng.normal(self.mu, 1.0 / math.sqrt(self.kappa * tau))), tau


_AGENT_TYPES = (("personal", "personal"), ("evolved", "evolved"), ("generated", "generated"))


def agent_type(name: str) -> str:
    """The platform's agent type from substrings of the name (default ``cognitive``)."""
    low = name.lower()
    for needle, kind in _AGENT_TYPES:
        if needle in low:
            return kind
    return "cognitive"


@dataclass
class AgentModel:
    """Performance model of one agent on one task type."""

    success: BetaPosterior = field(default_factory=BetaPosterior)
    latency: NormalGamma = field(default_factory=NormalGamma)
    usage_a: float = 2.0
    usage_b: float = 1000.0
    n: int = 0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=10))

    def update(
        self, success: float, latency_ms: float | None = None, tokens: float | None = None
    ) -> None:
        """Add one observed outcome (``success`` in [0, 1]), all or nothing.

        Raises:
            InputError: ``success`` out of [0, 1], a latency that is not finite (or too far
                from the model to add), or tokens that are negative or not finite; the model
                is left unchanged.
        """
        alpha, beta = self.success.updated(success)
        latency = None
        if latency_ms is not None:
            latency = self.latency.updated(float(latency_ms), "latency_ms")
        usage_a, usage_b = self.usage_a, self.usage_b
        if tokens is not None:
            tokens = float(tokens)
            if not (math.isfinite(tokens) and tokens >= 0):
                raise InputError(
                    f"tokens: must be finite and >= 0, got {tokens!r}",
                    details=[{"field": "tokens"}],
                )
            usage_a, usage_b = usage_a + 1.0, usage_b + tokens
            if not math.isfinite(usage_b):
                raise InputError(
                    f"tokens: {tokens!r} would overflow the usage model",
                    details=[{"field": "tokens"}],
                )
        # everything that can fail has been computed: commit
        self.success.alpha, self.success.beta = alpha, beta
        if latency is not None:
            lat = self.latency
            lat.mu, lat.kappa, lat.a, lat.b = latency
        self.usage_a, self.usage_b = usage_a, usage_b
        self.n += 1
        self.recent.append(float(success))

    @property
    def expected_usage(self) -> float:
        return self.usage_b / (self.usage_a - 1.0)

    @property
    def consistency(self) -> float:
        if len(self.recent) < 5:
            return 0.0
        return math.exp(-2.0 * float(np.var(np.asarray(self.recent))))

    @property
    def reliability(self) -> float:
        return 0.7 * min(1.0, self.n / 30.0) + 0.3 * self.consistency

    @property
    def expected_performance(self) -> float:
        return (
            0.5 * self.success.mean
            + 0.3 / (1.0 + max(self.latency.mean, 0.0) / 1000.0)
            + 0.2 / (1.0 + self.expected_usage / 1000.0)
        )

    def kernel_params(self) -> list[float]:
        """``[alpha, beta, mu, kappa, a, b, usage_a, usage_b, reliability]`` for kernels."""
        s, lat = self.success, self.latency
        return [
            s.alpha,
            s.beta,
            lat.mu,
            lat.kappa,
            lat.a,
            lat.b,
            self.usage_a,
            self.usage_b,
            self.reliability,
        ]

    def statistics(self) -> dict[str, Any]:
        lo, hi = wilson_interval(self.success.mean, self.success.alpha + self.success.beta)
        return {
            "successRate": self.success.mean,
            "confidenceInterval": [lo, hi],
            "expectedLatencyMs": self.latency.mean,
            "expectedTokens": self.expected_usage,
            "reliability": self.reliability,
            "samples": self.n,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": [self.success.alpha, self.success.beta],
            "latency": [self.latency.mu, self.latency.kappa, self.latency.a, self.latency.b],
            "usage": [self.usage_a, self.usage_b],
            "n": self.n,
            "recent": list(self.recent),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AgentModel:
        try:
            m = cls(
                success=BetaPosterior(*map(float, d["success"])),
                latency=NormalGamma(*map(float, d["latency"])),
                usage_a=float(d["usage"][0]),
                usage_b=float(d["usage"][1]),
                n=int(d["n"]),
            )
            m.recent.extend(float(x) for x in d["recent"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageFormatError(f"agent model is corrupt: {exc}") from None
        return m


class ModelRegistry:
    """Agent models keyed by ``(agent, task_type)``; created with the priors on first use."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, str], AgentModel] = {}

    def get(self, agent: str, task_type: str = "general") -> AgentModel:
        key = (agent, task_type)
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = AgentModel()
        return model

    def update(
        self,
        agent: str,
        task_type: str,
        success: float,
        latency_ms: float | None = None,
        tokens: float | None = None,
    ) -> AgentModel:
        """Add one outcome to ``agent``'s model for ``task_type`` (made with the priors on
        first use); an outcome :meth:`AgentModel.update` refuses changes nothing, and leaves
        no new model behind."""
        key = (agent, task_type)
        model = self._models.get(key)
        fresh = model is None
        if model is None:
            model = AgentModel()
        model.update(success, latency_ms, tokens)
        if fresh:
            self._models[key] = model
        return model

    def __iter__(self) -> Iterator[tuple[tuple[str, str], AgentModel]]:
        return iter(list(self._models.items()))

    def __len__(self) -> int:
        return len(self._models)

    def rankings(self, task_type: str = "general") -> list[dict[str, Any]]:
        """Agents with a model for ``task_type``, best expected performance first."""
        rows: list[dict[str, Any]] = [
            {
                "agent": agent,
                "performance": m.expected_performance,
                "reliability": m.reliability,
                "samples": m.n,
                "statistics": m.statistics(),
            }
            for (agent, tt), m in self._models.items()
            if tt == task_type
        ]
        rows.sort(key=lambda r: -r["performance"])
        return rows

    def clear(self) -> None:
        self._models.clear()

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": MODELS_FORMAT_VERSION,
            "models": [  # over a copy of the items: a search thread may add a model meanwhile
                {"agent": a, "taskType": t, **m.to_dict()}
                for (a, t), m in list(self._models.items())
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelRegistry:
        version = d.get("version") if isinstance(d, dict) else None
        if version != MODELS_FORMAT_VERSION:
            raise StorageFormatError(
                f"agent models: unknown format version {version!r}; "
                f"this version reads {MODELS_FORMAT_VERSION}"
            )
        reg = cls()
        for row in d.get("models", []):
            reg._models[(str(row["agent"]), str(row["taskType"]))] = AgentModel.from_dict(row)
        return reg
