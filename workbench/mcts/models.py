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

Order effects: a step's success also has a model per ``(previous agent, agent, task type)``
(:class:`PairModel`; the first step's previous agent is :data:`START`), shrunk toward the
agent's own success model: its posterior is ``Beta(m mu + s, m (1 - mu) + f)`` with ``mu`` the
agent's posterior mean success, ``m`` the shrinkage strength (``pair_strength``, 2
pseudo-observations by default) and ``s, f`` the successes and failures seen after that
predecessor. A pair never seen predicts what the agent does on its own; a pair seen often
predicts from its own record. This is the closed form of a two-level Beta hierarchy with the
agent's mean plugged in (empirical Bayes), chosen over a sampled hierarchy because the
planner evaluates it for every (predecessor, agent) pair on each request.

Forgetting: with ``decay < 1`` the success posteriors are discounted posteriors (discounted
Thompson sampling, Raj and Kalyani 2017): each outcome learnt on a task type ticks that task
type's clock, and every success posterior of the task type (agent and pair, observed or not)
is discounted toward its prior once per tick (``alpha <- 1 + decay (alpha - 1)``, the same
for ``beta``; pair counts ``s, f <- decay s, decay f``). So an agent whose quality drifts is
followed with an effective memory of about ``1 / (1 - decay)`` outcomes, and an agent not run
for a while regains its prior's uncertainty and is tried again, which is what lets the
planner notice that an agent it gave up on has improved (or that the agent it relied on got
worse while the others were left alone). The discount is applied lazily, when a model is read
or updated (``decay ** ticks since its last visit``), which is exact since discounts compose.
``decay = 1`` (the default) is the exact stationary posterior.

Bounds: a registry holds at most ``max_models`` agent models and ``max_models`` pair models;
past that the least recently used is dropped (it falls back to the priors if seen again), so
task types and agent names coming from requests cannot grow it without limit. It also keeps
the ids of the last ``max_credited`` orchestrations whose feedback has been learnt
(:meth:`ModelRegistry.credit`), saved with the models so a repeated feedback changes nothing
after a restart either, and one clock per task type (at most ``max_models``).

Updates are all-or-nothing: :meth:`AgentModel.update` computes every posterior first and
raises :class:`~workbench.errors.InputError` before changing anything when an observation is
out of range or would leave a parameter non-finite (a latency of 1e200 ms squares past the
largest float), and :meth:`ModelRegistry.update` keeps no model for an outcome it refused.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np

from workbench.errors import InputError, StorageFormatError

__all__ = [
    "START",
    "AgentModel",
    "BetaPosterior",
    "ModelRegistry",
    "NormalGamma",
    "PairModel",
    "agent_type",
    "wilson_interval",
]

MODELS_FORMAT_VERSION = 2
#: Formats :meth:`ModelRegistry.from_dict` reads (1: agent models only).
_READABLE_FORMATS = (1, 2)

#: The "previous agent" of a plan's first step (no agent name is empty).
START = ""


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
    seen: int = 0

    def discount(self, factor: float) -> None:
        """Discount the success posterior toward its Beta(1, 1) prior by ``factor``."""
        if factor != 1.0:
            self.success.alpha = 1.0 + factor * (self.success.alpha - 1.0)
            self.success.beta = 1.0 + factor * (self.success.beta - 1.0)

    def update(
        self,
        success: float,
        latency_ms: float | None = None,
        tokens: float | None = None,
        *,
        decay: float = 1.0,
    ) -> None:
        """Add one observed outcome (``success`` in [0, 1]), all or nothing; with
        ``decay < 1`` the success posterior is first discounted toward its Beta(1, 1) prior.

        Raises:
            InputError: ``success`` out of [0, 1], a latency that is not finite (or too far
                from the model to add), or tokens that are negative or not finite; the model
                is left unchanged.
        """
        alpha, beta = self.success.updated(success)
        if decay != 1.0:
            alpha = 1.0 + decay * (self.success.alpha - 1.0) + success
            beta = 1.0 + decay * (self.success.beta - 1.0) + (1.0 - success)
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
            "seen": self.seen,
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
                seen=int(d.get("seen", 0)),
            )
            m.recent.extend(float(x) for x in d["recent"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageFormatError(f"agent model is corrupt: {exc}") from None
        return m


@dataclass
class PairModel:
    """Successes and failures of an agent right after one predecessor, on one task type.

    Attributes:
        successes, failures: (Discounted) counts of the step's outcomes after that
            predecessor.
        n: Observations added (not discounted).
        seen: The task type's clock when the counts were last discounted.
    """

    successes: float = 0.0
    failures: float = 0.0
    n: int = 0
    seen: int = 0

    def discount(self, factor: float) -> None:
        """Discount the counts by ``factor``."""
        if factor != 1.0:
            self.successes *= factor
            self.failures *= factor

    def posterior(self, agent_mean: float, strength: float) -> BetaPosterior:
        """``Beta(m mu + s, m (1 - mu) + f)``: the pair's record shrunk toward the agent's
        mean success ``mu`` with ``m = strength`` pseudo-observations."""
        return BetaPosterior(
            strength * agent_mean + self.successes, strength * (1.0 - agent_mean) + self.failures
        )

    def updated(self, success: float, decay: float = 1.0) -> tuple[float, float]:
        """``(successes, failures)`` after discounting by ``decay`` and adding ``success``."""
        return decay * self.successes + success, decay * self.failures + (1.0 - success)


_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    """Run a registry method under the registry's lock: reading a model may discount it, and
    two threads discounting the same model at once would discount it twice."""

    @functools.wraps(method)
    def wrapper(self: ModelRegistry, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return cast(_F, wrapper)


def _check_setting(name: str, value: float, ok: bool) -> None:
    if not ok:
        raise InputError(f"{name}: out of range, got {value!r}", details={"field": name})


class ModelRegistry:
    """Agent models keyed by ``(agent, task_type)`` and pair models keyed by
    ``(previous agent, agent, task_type)``; created with the priors on first use.

    Args:
        decay: Forgetting factor of the success posteriors in (0, 1] (1: no forgetting).
        pair_strength: Pseudo-observations of the agent's mean in a pair's prior (> 0).
        max_models: Most agent models and most pair models kept (least recently used
            dropped first).
        max_credited: Most orchestration ids remembered as credited.
    """

    def __init__(
        self,
        *,
        decay: float = 1.0,
        pair_strength: float = 2.0,
        max_models: int = 10_000,
        max_credited: int = 10_000,
    ) -> None:
        _check_setting("decay", decay, 0.0 < decay <= 1.0)
        _check_setting("pair_strength", pair_strength, pair_strength > 0)
        _check_setting("max_models", max_models, max_models >= 1)
        _check_setting("max_credited", max_credited, max_credited >= 1)
        self.decay = float(decay)
        self.pair_strength = float(pair_strength)
        self.max_models = int(max_models)
        self.max_credited = int(max_credited)
        self._models: OrderedDict[tuple[str, str], AgentModel] = OrderedDict()
        self._pairs: OrderedDict[tuple[str, str, str], PairModel] = OrderedDict()
        self._credited: OrderedDict[str, None] = OrderedDict()
        self._clocks: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.RLock()

    def clock(self, task_type: str = "general") -> int:
        """Outcomes learnt on ``task_type`` (the ticks of its discount clock)."""
        return self._clocks.get(task_type, 0)

    def _tick(self, task_type: str) -> int:
        now = self.clock(task_type) + 1
        self._bounded_put(self._clocks, task_type, now, self.max_models)
        return now

    @_locked
    def _refresh(self, model: AgentModel | PairModel, task_type: str) -> None:
        """Bring ``model``'s discount up to the task type's clock."""
        now = self.clock(task_type)
        if model.seen < now:
            if self.decay != 1.0:
                model.discount(self.decay ** (now - model.seen))
            model.seen = now

    def settings(self) -> dict[str, Any]:
        """The constructor's keyword arguments (for a registry built like this one)."""
        return {
            "decay": self.decay,
            "pair_strength": self.pair_strength,
            "max_models": self.max_models,
            "max_credited": self.max_credited,
        }

    @staticmethod
    def _bounded_put(table: OrderedDict[Any, Any], key: Any, value: Any, limit: int) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > limit:
            table.popitem(last=False)

    def get(self, agent: str, task_type: str = "general") -> AgentModel:
        """The model of ``agent`` on ``task_type`` (made with the priors and kept)."""
        key = (agent, task_type)
        model = self._models.get(key)
        if model is None:
            model = AgentModel(seen=self.clock(task_type))
            self._bounded_put(self._models, key, model, self.max_models)
        else:
            self._refresh(model, task_type)
            self._models.move_to_end(key)
        return model

    def peek(self, agent: str, task_type: str = "general") -> AgentModel:
        """The model of ``agent`` on ``task_type`` without keeping a new one (the priors
        when there is none): planning reads models for every candidate without growing
        the registry."""
        model = self._models.get((agent, task_type))
        if model is None:
            return AgentModel()
        self._refresh(model, task_type)
        return model

    def pair(self, previous: str, agent: str, task_type: str = "general") -> PairModel:
        """The record of ``agent`` right after ``previous`` (:data:`START` for a first
        step); empty, and not kept, when never seen."""
        model = self._pairs.get((previous, agent, task_type))
        if model is None:
            return PairModel()
        self._refresh(model, task_type)
        return model

    def pair_posterior(
        self, previous: str, agent: str, task_type: str = "general"
    ) -> BetaPosterior:
        """Success posterior of ``agent`` right after ``previous``, shrunk toward the agent's
        own (see the module docstring)."""
        mean = self.peek(agent, task_type).success.mean
        return self.pair(previous, agent, task_type).posterior(mean, self.pair_strength)

    def pairs(self, task_type: str) -> list[tuple[str, str, PairModel]]:
        """``(previous, agent, record)`` of every pair seen on ``task_type``."""
        out = [(p, a, m) for (p, a, t), m in list(self._pairs.items()) if t == task_type]
        for _, _, m in out:
            self._refresh(m, task_type)
        return out

    @_locked
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
        now = self.clock(task_type) + 1  # this outcome's tick
        if model is None:
            model = AgentModel(seen=now)
        model.update(success, latency_ms, tokens, decay=self.decay ** (now - model.seen))
        model.seen = now
        self._tick(task_type)
        if fresh:
            self._bounded_put(self._models, key, model, self.max_models)
        else:
            self._models.move_to_end(key)
        return model

    @_locked
    def update_step(
        self,
        previous: str,
        agent: str,
        task_type: str,
        success: float,
        latency_ms: float | None = None,
        tokens: float | None = None,
    ) -> tuple[AgentModel, PairModel]:
        """Add one step's outcome to ``agent``'s model and to the pair model after
        ``previous``, all or nothing (one tick of the task type's clock). Returns both (their
        ``n`` and :meth:`clock` locate this observation for a later :meth:`correct_step`)."""
        model = self.update(agent, task_type, success, latency_ms, tokens)
        now = self.clock(task_type)
        key = (previous, agent, task_type)
        pair = self._pairs.get(key) or PairModel(seen=now)
        pair.successes, pair.failures = pair.updated(
            float(success), self.decay ** (now - pair.seen)
        )
        pair.n += 1
        pair.seen = now
        self._bounded_put(self._pairs, key, pair, self.max_models)
        return model, pair

    @_locked
    def correct_step(
        self,
        previous: str,
        agent: str,
        task_type: str,
        old: float,
        new: float,
        agent_n: int,
        pair_n: int,
        learnt_at: int | None = None,
    ) -> bool:
        """Replace a success ``old`` learnt earlier (when the models' ``n`` were ``agent_n``
        and ``pair_n`` and the task type's :meth:`clock` was ``learnt_at``, just after it) by
        ``new``, with the weight the observation has now (``decay ** ticks since``): the
        posteriors become what they would be had ``new`` been observed. Returns ``False``
        (changing nothing) when the observation is no longer there (the models were reset or
        dropped since), or its weight is unknown (``learnt_at`` is ``None`` while ``decay <
        1``).

        Raises:
            InputError: ``new`` is not in [0, 1].
        """
        if not 0.0 <= new <= 1.0:
            raise InputError(f"success: must be in [0, 1], got {new!r}")
        model = self._models.get((agent, task_type))
        pair = self._pairs.get((previous, agent, task_type))
        if model is None or pair is None or model.n < agent_n or pair.n < pair_n:
            return False
        now = self.clock(task_type)
        if learnt_at is None or learnt_at > now:
            if self.decay != 1.0:
                return False
            learnt_at = now
        self._refresh(model, task_type)
        self._refresh(pair, task_type)
        w = self.decay ** (now - learnt_at)
        delta = w * (new - old)
        model.success.alpha += delta
        model.success.beta -= delta
        pair.successes += delta
        pair.failures -= delta
        return True

    # -- feedback ledger ---------------------------------------------------------------
    def is_credited(self, orchestration_id: str) -> bool:
        return orchestration_id in self._credited

    def credit(self, orchestration_id: str) -> bool:
        """Mark an orchestration's feedback as learnt; ``False`` if it already was."""
        if orchestration_id in self._credited:
            return False
        self._bounded_put(self._credited, orchestration_id, None, self.max_credited)
        return True

    def __iter__(self) -> Iterator[tuple[tuple[str, str], AgentModel]]:
        return iter(list(self._models.items()))

    def __len__(self) -> int:
        return len(self._models)

    def rankings(self, task_type: str = "general") -> list[dict[str, Any]]:
        """Agents with a model for ``task_type``, best expected performance first."""
        models = [(a, m) for (a, tt), m in list(self._models.items()) if tt == task_type]
        for _, m in models:
            self._refresh(m, task_type)
        rows: list[dict[str, Any]] = [
            {
                "agent": agent,
                "performance": m.expected_performance,
                "reliability": m.reliability,
                "samples": m.n,
                "statistics": m.statistics(),
            }
            for agent, m in models
        ]
        rows.sort(key=lambda r: -r["performance"])
        return rows

    def clear(self) -> None:
        """Forget every model, the feedback ledger and the clocks."""
        self._models.clear()
        self._pairs.clear()
        self._credited.clear()
        self._clocks.clear()

    def restore(self, other: ModelRegistry | Mapping[str, Any]) -> None:
        """Replace this registry's contents by ``other``'s (a registry or its
        :meth:`to_dict`), keeping this registry's settings."""
        src = other if isinstance(other, ModelRegistry) else ModelRegistry.from_dict(other)
        self.clear()
        for key, m in src._models.items():
            self._bounded_put(self._models, key, m, self.max_models)
        for pkey, p in src._pairs.items():
            self._bounded_put(self._pairs, pkey, p, self.max_models)
        for oid in src._credited:
            self._bounded_put(self._credited, oid, None, self.max_credited)
        for tt, now in src._clocks.items():
            self._bounded_put(self._clocks, tt, now, self.max_models)

    def to_dict(self) -> dict[str, Any]:
        # over copies of the items: a search thread may add a model meanwhile
        return {
            "version": MODELS_FORMAT_VERSION,
            "models": [
                {"agent": a, "taskType": t, **m.to_dict()}
                for (a, t), m in list(self._models.items())
            ],
            "pairs": [
                {
                    "previous": p,
                    "agent": a,
                    "taskType": t,
                    "successes": m.successes,
                    "failures": m.failures,
                    "n": m.n,
                    "seen": m.seen,
                }
                for (p, a, t), m in list(self._pairs.items())
            ],
            "credited": list(self._credited),
            "clocks": [{"taskType": t, "clock": c} for t, c in list(self._clocks.items())],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], **settings: Any) -> ModelRegistry:
        """A registry from :meth:`to_dict` (format 1 or 2), built with ``settings``."""
        version = d.get("version") if isinstance(d, Mapping) else None
        if version not in _READABLE_FORMATS:
            raise StorageFormatError(
                f"agent models: unknown format version {version!r}; "
                f"this version reads {', '.join(map(str, _READABLE_FORMATS))}"
            )
        reg = cls(**settings)
        try:
            for row in d.get("models", []):
                key = (str(row["agent"]), str(row["taskType"]))
                reg._bounded_put(reg._models, key, AgentModel.from_dict(row), reg.max_models)
            for row in d.get("pairs", []):
                pkey = (str(row["previous"]), str(row["agent"]), str(row["taskType"]))
                pair = PairModel(
                    float(row["successes"]),
                    float(row["failures"]),
                    int(row["n"]),
                    int(row.get("seen", 0)),
                )
                reg._bounded_put(reg._pairs, pkey, pair, reg.max_models)
            for oid in d.get("credited", []):
                reg._bounded_put(reg._credited, str(oid), None, reg.max_credited)
            for row in d.get("clocks", []):
                reg._bounded_put(
                    reg._clocks, str(row["taskType"]), int(row["clock"]), reg.max_models
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageFormatError(f"agent models are corrupt: {exc}") from None
        return reg
