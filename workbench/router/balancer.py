"""Routing decisions: per-backend state, balancing strategies, and the :class:`Router` facade.

The proxy asks the :class:`Router` for an attempt order (:meth:`Router.plan`), brackets each
attempt with :meth:`Router.start` and :meth:`Router.finish`, and forwards client feedback
(:meth:`Router.feedback`). The router keeps one :class:`BackendState` per backend: requests
in flight, a peak-EWMA latency, an error-rate EWMA, a sliding-window circuit breaker
(:class:`~workbench.breaker.SlidingWindowBreaker`), the active-probe verdict and any outlier
ejection (:mod:`workbench.router.health`).

Strategies (name-keyed registry :data:`STRATEGIES`, the names of ``[router] strategy``):

``round-robin``
    The available backends in turn (one counter per model).
``weighted``
    At random in proportion to ``weight``.
``least-outstanding``
    Fewest requests in flight; ties by the P2C score's latency part (decayed peak-EWMA
    latency plus any error penalty), then at random. At low load most backends have nothing
    in flight, and ties broken at random alone would send a slow backend its full share.
``p2c-ewma``
    Power of two choices (Mitzenmacher): two distinct backends at random, the one with the
    lower ``peak_ewma_latency * (outstanding + 1)`` wins (Finagle's and Linkerd's balancer).
    Peak EWMA: a sample above the average replaces it at once, a lower one is averaged in
    with weight ``1 - exp(-dt / tau)``, and the average read at decision time decays towards 0
    with the same time constant, so a backend that stopped getting traffic is tried again.
    An error (5xx, 429, transport error) is *not* a fast sample: it adds a penalty of
    ``max(latency, 5 * ewma, error_penalty_s)`` to the backend's score, so a backend that fails
    fast loses traffic instead of attracting it. The penalty is kept apart from the latency
    average (errors do not compound into it) and lasts one cooldown: the breaker's ``open_s``,
    or the backend's ``Retry-After`` when it sent a longer one. After that the backend competes
    on its latency again, so one that recovered is never left without traffic.
``cost``
    Lowest ``cost_per_1k_tokens``; ties by (decayed) EWMA latency, then at random.
``tiers``
    The platform's rule table on the request text (:class:`~workbench.router.rules.TierStrategy`).
``thompson``
    Thompson sampling on success, latency and feedback
    (:class:`~workbench.router.learning.ThompsonStrategy`).

Whatever the strategy, every outcome also updates the router's Thompson learner, so switching
to ``thompson`` starts from what traffic taught, and feedback is never lost.

Outcomes are classified once, in :meth:`Router.finish`: success; a client error (4xx other
than 408 and 429: the request, not the backend, was at fault) releases the breaker's permit
with no verdict and teaches nothing; anything else (5xx, 408, 429, transport errors, no
status) is a backend failure for the breaker, the EWMA, the learner and (5xx and transport
errors only) the outlier detector.
"""

from __future__ import annotations

import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from workbench.breaker import CLOSED, HALF_OPEN, OPEN, SlidingWindowBreaker
from workbench.errors import ConfigError, InputError
from workbench.router.config import BackendConfig, RouterConfig
from workbench.router.health import HealthProber, OutlierDetector
from workbench.router.learning import ThompsonLearner, ThompsonStrategy
from workbench.router.rules import TierStrategy

__all__ = [
    "STRATEGIES",
    "BackendState",
    "Outcome",
    "Router",
    "Strategy",
    "make_strategy",
    "register_strategy",
]

_INF = math.inf


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt on a backend came to.

    Attributes:
        success: The backend answered usefully (2xx).
        latency_s: Seconds from sending to the answer (or the failure).
        status: The HTTP status (429, 5xx, ...), or ``None`` for a transport error.
        retry_after_s: The backend's Retry-After, when it sent one.
        quality: A quality signal in [0, 1] known at finish time (``None``: none).
        tokens: Tokens the request used (for accounting).
    """

    success: bool
    latency_s: float
    status: int | None = None
    retry_after_s: float | None = None
    quality: float | None = None
    tokens: int = 0

    @property
    def client_error(self) -> bool:
        """A 4xx other than 408 and 429: the request was at fault, not the backend."""
        s = self.status
        return not self.success and s is not None and 400 <= s < 500 and s not in (408, 429)


class BackendState:
    """Live state of one backend (for one event loop: no locks beyond the breaker's).

    Attributes:
        config: The backend's configuration.
        breaker: Its circuit breaker.
        outstanding: Requests in flight (between :meth:`Router.start` and ``finish``).
        ewma_latency_s: Peak-EWMA latency of successes at the last update (:meth:`latency`).
        penalty_s, penalty_until: The error penalty added to the score, and the clock time
            it lapses (see ``p2c-ewma`` in the module doc).
        error_rate: EWMA (alpha 0.05, the platform's) of backend failures.
        healthy: The active probes' verdict (True until a prober says otherwise).
        ejected_until: Clock time when an outlier ejection ends (``-inf``: none).
        requests, errors: Outcomes seen and backend failures among them.
    """

    __slots__ = (
        "_permits",
        "_probes_out",
        "_tau_s",
        "breaker",
        "config",
        "consecutive_errors",
        "ejected_until",
        "ejections",
        "error_rate",
        "errors",
        "ewma_at",
        "ewma_latency_s",
        "healthy",
        "last_ejected_at",
        "last_model",
        "name",
        "outstanding",
        "penalty_s",
        "penalty_until",
        "requests",
    )

    def __init__(
        self, config: BackendConfig, breaker: SlidingWindowBreaker, *, tau_s: float = 10.0
    ) -> None:
        self.config = config
        self.name = config.name
        self.breaker = breaker
        self.outstanding = 0
        self.ewma_latency_s = 0.0
        self.ewma_at = -_INF
        self.penalty_s = 0.0
        self.penalty_until = -_INF
        self.error_rate = 0.0
        self.healthy = True
        self.ejected_until = -_INF
        self.ejections = 0
        self.last_ejected_at = -_INF
        self.consecutive_errors = 0
        self.requests = self.errors = 0
        self.last_model: str | None = None
        self._tau_s = tau_s
        self._permits = 0  # breaker permissions taken by start() and not yet reported
        self._probes_out = 0  # of which taken while the breaker was half-open

    def __repr__(self) -> str:
        return f"BackendState({self.name!r}, outstanding={self.outstanding})"

    def latency(self, now: float) -> float:
        """Peak-EWMA latency decayed to ``now`` (what the strategies compare)."""
        dt = now - self.ewma_at
        if dt <= 0:
            return self.ewma_latency_s
        return self.ewma_latency_s * math.exp(-dt / self._tau_s)

    def penalty(self, now: float) -> float:
        """The error penalty in force at ``now`` (0 once its cooldown has passed)."""
        return self.penalty_s if now < self.penalty_until else 0.0

    def load_cost(self, now: float) -> float:
        """``(latency(now) + penalty(now)) * (outstanding + 1)``: P2C-EWMA's score (lower is
        better)."""
        return (self.latency(now) + self.penalty(now)) * (self.outstanding + 1)

    def _breaker_admits(self) -> bool:
        state = self.breaker.state
        if state == CLOSED:
            return True
        if state == OPEN:
            return False
        # Half-open: its probes are a bounded few, and ``try_acquire`` would take one.
        return self._probes_out < self.breaker.half_open_calls

    def available(self, now: float) -> bool:
        """Healthy, not ejected, admitted by its breaker, and below ``max_concurrency``."""
        return (
            self.healthy
            and now >= self.ejected_until
            and self.outstanding < self.config.max_concurrency
            and self._breaker_admits()
        )

    def wait_s(self, now: float) -> float | None:
        """Seconds until it may become available by itself (0: now; None: no known time,
        such as an unhealthy or saturated backend, which waits on a probe or a finish)."""
        if not self.healthy or self.outstanding >= self.config.max_concurrency:
            return None
        if self.available(now):
            return 0.0
        wait = max(self.ejected_until - now, self.breaker.retry_in_s(), 0.0)
        if wait == 0.0:
            return None  # half-open with every probe out: waits on their reports
        return wait

    def _observe_latency(self, sample: float, now: float) -> None:
        current = self.latency(now)
        if sample >= current:
            self.ewma_latency_s = sample
        else:
            dt = max(0.0, now - self.ewma_at)
            w = math.exp(-dt / self._tau_s) if math.isfinite(dt) else 0.0
            self.ewma_latency_s = current * w + sample * (1.0 - w)
        self.ewma_at = now


class Strategy(Protocol):
    """A balancing strategy: picks one of the available candidates, learns from outcomes."""

    name: str

    def pick(
        self,
        candidates: Sequence[BackendState],
        *,
        model: str,
        text: str,
        now: float,
        rng: random.Random,
    ) -> int:
        """Index into ``candidates`` (non-empty, all available) of the first attempt."""
        ...

    def observe(self, backend: BackendState, outcome: Outcome, *, model: str, now: float) -> None:
        """Learn from the outcome of a request for ``model`` on ``backend``."""
        ...


def _random_min(keys: Sequence[Any], rng: random.Random) -> int:
    low = min(keys)
    best = [i for i, k in enumerate(keys) if k == low]
    return best[0] if len(best) == 1 else best[rng.randrange(len(best))]


class _Stateless:
    name = ""

    def observe(self, backend: BackendState, outcome: Outcome, *, model: str, now: float) -> None:
        """Nothing to learn beyond the backend state the router keeps."""


class RoundRobin(_Stateless):
    name = "round-robin"

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def pick(
        self,
        candidates: Sequence[BackendState],
        *,
        model: str,
        text: str,
        now: float,
        rng: random.Random,
    ) -> int:
        i = self._next.get(model, 0)
        self._next[model] = i + 1
        return i % len(candidates)


class WeightedRandom(_Stateless):
    name = "weighted"

    def pick(
        self,
        candidates: Sequence[BackendState],
        *,
        model: str,
        text: str,
        now: float,
        rng: random.Random,
    ) -> int:
        total = 0.0
        for c in candidates:
            total += c.config.weight
        x = rng.random() * total
        for i, c in enumerate(candidates):
            x -= c.config.weight
            if x < 0:
                return i
        return len(candidates) - 1


class LeastOutstanding(_Stateless):
    name = "least-outstanding"

    def pick(
        self,
        candidates: Sequence[BackendState],
        *,
        model: str,
        text: str,
        now: float,
        rng: random.Random,
    ) -> int:
        return _random_min(
            [(c.outstanding, c.latency(now) + c.penalty(now)) for c in candidates], rng
        )


class P2CEwma(_Stateless):
    name = "p2c-ewma"

    def pick(
        self,
        candidates: Sequence[BackendState],
        *,
        model: str,
        text: str,
        now: float,
        rng: random.Random,
    ) -> int:
        n = len(candidates)
        if n == 1:
            return 0
        i = rng.randrange(n)
        j = rng.randrange(n - 1)
        if j >= i:
            j += 1
        return j if candidates[j].load_cost(now) < candidates[i].load_cost(now) else i


class CheapestFirst(_Stateless):
    name = "cost"

    def pick(
        self,
        candidates: Sequence[BackendState],
        *,
        model: str,
        text: str,
        now: float,
        rng: random.Random,
    ) -> int:
        return _random_min([(c.config.cost_per_1k_tokens, c.latency(now)) for c in candidates], rng)


#: ``factory(config, learner) -> Strategy``.
StrategyFactory = Callable[[RouterConfig, ThompsonLearner], Strategy]
_REGISTRY: dict[str, StrategyFactory] = {}
#: Read-only view of the registered strategy factories, by name.
STRATEGIES: Mapping[str, StrategyFactory] = MappingProxyType(_REGISTRY)


def register_strategy(name: str, factory: StrategyFactory) -> None:
    """Register ``factory(config, learner) -> Strategy`` under ``name`` (no duplicates)."""
    if name in _REGISTRY:
        raise ConfigError(
            f"strategy {name!r} is already registered; pick another name",
            details={"field": "name", "value": name},
        )
    _REGISTRY[name] = factory


def make_strategy(name: str, config: RouterConfig, learner: ThompsonLearner) -> Strategy:
    """The strategy registered as ``name``."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ConfigError(
            f"strategy={name!r} is unknown; known strategies: {', '.join(sorted(_REGISTRY))}",
            details={"field": "strategy", "value": name},
        )
    return factory(config, learner)


register_strategy("round-robin", lambda config, learner: RoundRobin())
register_strategy("weighted", lambda config, learner: WeightedRandom())
register_strategy("least-outstanding", lambda config, learner: LeastOutstanding())
register_strategy("p2c-ewma", lambda config, learner: P2CEwma())
register_strategy("cost", lambda config, learner: CheapestFirst())
register_strategy("tiers", lambda config, learner: TierStrategy())
register_strategy("thompson", lambda config, learner: ThompsonStrategy(learner))


class Router:
    """Routing decisions for a set of backends (module doc).

    Args:
        config: The router configuration.
        clock: Monotonic seconds (breakers, EWMAs, ejections all read it).
        rng: Random source of the strategies (seeded by tests).
        outlier: The passive outlier detector (defaults: 5 errors in a row, ejected for 10 s
            doubling up to the breaker's open_s, so an ejection never outlasts one open wait).
        ewma_tau_s: Time constant of the latency EWMA (Finagle's 10 s).
        error_penalty_s: Least latency an error counts as (see ``p2c-ewma``).
        max_tracked: Request ids remembered for feedback (oldest dropped first).
    """

    def __init__(
        self,
        config: RouterConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        outlier: OutlierDetector | None = None,
        ewma_tau_s: float = 10.0,
        error_penalty_s: float = 0.25,
        max_tracked: int = 100_000,
    ) -> None:
        if not ewma_tau_s > 0 or not error_penalty_s >= 0 or max_tracked < 1:
            raise ConfigError(
                "ewma_tau_s must be > 0, error_penalty_s >= 0 and max_tracked >= 1; got "
                f"{ewma_tau_s!r}, {error_penalty_s!r}, {max_tracked!r}"
            )
        self.config = config
        self._clock = clock
        self._rng = rng or random.Random()
        if outlier is None:
            # An ejection never outlasts one open wait of the breaker: a backend that
            # recovered gets traffic back within one cooldown, however long it was out.
            cap = config.breaker.open_s
            outlier = OutlierDetector(base_s=min(10.0, cap), max_s=cap)
        self.outlier = outlier
        self.error_penalty_s = float(error_penalty_s)
        self.max_tracked = int(max_tracked)
        breaker_kw = config.breaker.kwargs()
        self.backends: list[BackendState] = [
            BackendState(
                b,
                SlidingWindowBreaker(f"router-{b.name}", clock=clock, **breaker_kw),
                tau_s=ewma_tau_s,
            )
            for b in config.backends
        ]
        self._by_name = {s.name: s for s in self.backends}
        groups: dict[str, list[BackendState]] = {}
        for s in self.backends:
            for name in s.config.names:
                groups.setdefault(name, []).append(s)
        self._groups = {k: tuple(v) for k, v in groups.items()}
        self.learner = ThompsonLearner(forgetting=config.forgetting)
        if config.state_path:
            self.learner.load(config.state_path)
        names = {config.strategy, *config.strategies.values()}
        self.strategies: dict[str, Strategy] = {
            n: make_strategy(n, config, self.learner) for n in sorted(names)
        }
        default = self.strategies[config.strategy]
        self._strategy_for = {
            model: self.strategies[config.strategies.get(model, config.strategy)]
            for model in self._groups
        }
        self._default = default
        self._observers = [s for s in self.strategies.values() if not isinstance(s, _Stateless)]
        self._requests: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._feedback_done: OrderedDict[str, None] = OrderedDict()

    # -- decisions -----------------------------------------------------------------------

    def strategy(self, model: str) -> Strategy:
        """The strategy that routes ``model``."""
        return self._strategy_for.get(model, self._default)

    def _fallback_key(self, s: BackendState, now: float) -> tuple[bool, float]:
        return (s.error_rate > 0.5, s.load_cost(now))

    def plan(
        self, model: str, *, text: str = "", exclude: Iterable[str] = ()
    ) -> list[BackendState]:
        """The attempt order for a request for ``model`` (a model or an alias).

        The strategy's pick among the available backends serving ``model``, then the other
        available ones (lowest error rate and load cost first), then the available backends
        of each model in ``fallbacks[model]``, in order. Empty when ``model`` is unknown or
        nothing is available now (:meth:`known` and :meth:`time_to_first_available` tell
        those apart).

        Args:
            model: Requested model or alias.
            text: The user's request text (the last user message), for ``tiers``.
            exclude: Backend names not to plan (already tried).
        """
        group = self._groups.get(model)
        if group is None:
            return []
        now = self._clock()
        skip = set(exclude) if exclude else None
        avail = [s for s in group if (skip is None or s.name not in skip) and s.available(now)]
        out: list[BackendState] = []
        if avail:
            i = self.strategy(model).pick(avail, model=model, text=text, now=now, rng=self._rng)
            first = avail.pop(i)
            first.last_model = model
            out.append(first)
            if avail:
                avail.sort(key=lambda s: self._fallback_key(s, now))
                out.extend(avail)
        chain = self.config.fallbacks.get(model)
        if chain:
            seen = {s.name for s in out}
            if skip:
                seen |= skip
            for alt in chain:
                more = [
                    s for s in self._groups.get(alt, ()) if s.name not in seen and s.available(now)
                ]
                more.sort(key=lambda s: self._fallback_key(s, now))
                for s in more:
                    seen.add(s.name)
                    out.append(s)
        return out

    def start(self, backend: BackendState, *, model: str | None = None) -> bool:
        """Count a request as in flight on ``backend`` (call just before sending).

        Returns whether its breaker gave a permission (False only when another request took
        the last half-open probe between :meth:`plan` and now; the caller may try the next
        planned backend, after :meth:`cancel`).
        """
        backend.outstanding += 1
        if model is not None:
            backend.last_model = model
        half_open = backend.breaker.state != CLOSED
        if backend.breaker.try_acquire():
            backend._permits += 1
            if half_open:
                backend._probes_out += 1
            return True
        return False

    def _release(self, backend: BackendState) -> bool:
        backend.outstanding = max(0, backend.outstanding - 1)
        if backend._permits <= 0:
            return False
        backend._permits -= 1
        return True

    def _after_report(self, backend: BackendState) -> None:
        if backend.breaker.state != HALF_OPEN:  # it closed or opened: no probes out
            backend._probes_out = 0
        elif backend._probes_out > 0:
            backend._probes_out -= 1

    def cancel(self, backend: BackendState) -> None:
        """End an attempt with no verdict (the client went away, the request was never sent):
        the breaker's permit is released, nothing is learned."""
        if self._release(backend):
            backend.breaker.on_ignored()
            self._after_report(backend)

    def finish(
        self,
        backend: BackendState,
        outcome: Outcome,
        *,
        request_id: str | None = None,
        model: str | None = None,
    ) -> None:
        """Record the outcome of an attempt started with :meth:`start`.

        Args:
            backend: The backend it went to.
            outcome: What came of it.
            request_id: The client request's id; later :meth:`feedback` for it updates the
                learner for this backend.
            model: The model or alias requested (defaults to the one of the last plan that
                picked this backend first).
        """
        now = self._clock()
        permitted = self._release(backend)
        latency = outcome.latency_s if outcome.latency_s > 0 else 0.0
        key = model or backend.last_model or backend.config.names[0]
        if outcome.client_error:
            if permitted:
                backend.breaker.on_ignored()
                self._after_report(backend)
            return
        backend.requests += 1
        if permitted:
            if outcome.success:
                backend.breaker.on_success(latency)
            else:
                retry = outcome.retry_after_s
                backend.breaker.on_failure(
                    latency, retry_after_s=retry if retry is not None and retry >= 0 else None
                )
            self._after_report(backend)
        if outcome.success:
            backend._observe_latency(latency, now)
            backend.error_rate *= 0.95
        else:
            backend.errors += 1
            penalty = max(latency, 5.0 * backend.latency(now), self.error_penalty_s)
            cooldown = self.config.breaker.open_s
            if outcome.retry_after_s is not None and outcome.retry_after_s > cooldown:
                cooldown = outcome.retry_after_s
            backend.penalty_s = max(penalty, backend.penalty(now))
            backend.penalty_until = now + cooldown
            backend.error_rate = 0.95 * backend.error_rate + 0.05
        self.outlier.record(
            backend,
            success=outcome.success,
            status=outcome.status,
            now=now,
            peers=self._peers,
        )
        self.learner.observe(key, backend.name, outcome)
        for strategy in self._observers:
            if not isinstance(strategy, ThompsonStrategy):  # the shared learner is updated
                strategy.observe(backend, outcome, model=key, now=now)
        if request_id is not None:
            self._requests[request_id] = (key, backend.name)
            self._requests.move_to_end(request_id)
            if len(self._requests) > self.max_tracked:
                self._requests.popitem(last=False)

    def _peers(self, backend: BackendState) -> list[tuple[BackendState, ...]]:
        return [self._groups[name] for name in backend.config.names]

    def feedback(
        self,
        request_id: str,
        *,
        success: bool | None = None,
        quality: float | None = None,
        rating: float | None = None,
    ) -> bool:
        """Apply client feedback on a finished request, once per request id.

        Returns True when it was applied; False for an unknown id (never finished here, or
        forgotten) or one that already had feedback.

        Raises:
            InputError: nothing given, ``quality`` outside [0, 1] or ``rating`` outside [1, 5].
        """
        if not isinstance(request_id, str) or not request_id:
            raise InputError(
                f"requestId={request_id!r}: must be a non-empty string",
                details={"field": "requestId"},
            )
        if request_id in self._feedback_done:
            return False
        target = self._requests.get(request_id)
        if target is None:
            return False
        key, backend = target
        self.learner.feedback(key, backend, success=success, quality=quality, rating=rating)
        self._feedback_done[request_id] = None
        if len(self._feedback_done) > self.max_tracked:
            self._feedback_done.popitem(last=False)
        del self._requests[request_id]
        return True

    # -- introspection -------------------------------------------------------------------

    def models(self) -> list[str]:
        """Models and aliases served, sorted (for ``GET /v1/models``)."""
        return sorted(self._groups)

    def known(self, model: str) -> bool:
        return model in self._groups

    def backend(self, name: str) -> BackendState:
        """The state of the backend called ``name`` (KeyError when there is none)."""
        return self._by_name[name]

    def time_to_first_available(self, model: str) -> float | None:
        """Seconds until some backend for ``model`` (or its fallbacks) is available: 0 when
        one is now; None for an unknown model or when none has a known time (unhealthy,
        saturated)."""
        group = self._groups.get(model)
        if group is None:
            return None
        now = self._clock()
        names = [model, *self.config.fallbacks.get(model, ())]
        waits = [
            w
            for name in names
            for s in self._groups.get(name, ())
            if (w := s.wait_s(now)) is not None
        ]
        return min(waits) if waits else None

    def snapshot(self) -> dict[str, Any]:
        """Per backend: availability, breaker, in flight, latency, error rate, ejection."""
        now = self._clock()
        out: dict[str, Any] = {}
        for s in self.backends:
            if not s.healthy:
                state = "unhealthy"
            elif now < s.ejected_until:
                state = "ejected"
            elif s.available(now):
                state = "available"
            elif s.outstanding >= s.config.max_concurrency:
                state = "saturated"
            else:
                state = "cooling"
            out[s.name] = {
                "state": state,
                "breaker": s.breaker.snapshot(),
                "outstanding": s.outstanding,
                "ewma_latency_s": s.latency(now),
                "penalty_s": s.penalty(now),
                "error_rate": s.error_rate,
                "healthy": s.healthy,
                "ejected_for_s": max(0.0, s.ejected_until - now),
                "ejections": s.ejections,
                "requests": s.requests,
                "errors": s.errors,
            }
        return out

    def save_state(self) -> bool:
        """Write the learned posteriors to ``config.state_path``; False when none is set."""
        if not self.config.state_path:
            return False
        self.learner.save(self.config.state_path)
        return True

    def prober(self, **kw: Any) -> HealthProber:
        """A :class:`HealthProber` over these backends, sending each one's API key."""
        kw.setdefault("headers", _probe_headers)
        return HealthProber(self.backends, **kw)


def _probe_headers(config: BackendConfig) -> dict[str, str]:
    if not config.api_key:
        return {}
    if config.kind == "anthropic":
        return {"x-api-key": config.api_key, "anthropic-version": "2023-06-01"}
    return {"Authorization": f"Bearer {config.api_key}"}
