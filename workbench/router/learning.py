"""Learned routing: Thompson sampling over the backends of each model or alias.

Each (model, backend) pair has a Beta posterior over the backend's mean reward for that model,
starting from Beta(1, 1). A request goes to the backend whose posterior draw is highest
(Thompson sampling); its outcome and any later feedback update that backend's posterior.

Reward, in [0, 1] (:func:`outcome_reward`):

- a failed request (5xx, 429, transport error) is 0;
- a successful one is ``(1 - latency_weight) + latency_weight * s`` with the latency score
  ``s = 1 / (1 + latency_s / latency_scale_s)``: 1 for an instant answer, 1/2 at
  ``latency_scale_s`` (1 s by default), falling as ``scale / latency`` for slow ones;
- feedback (:func:`feedback_reward`) is a separate observation of weight ``quality_weight``:
  ``quality`` in [0, 1] as is, a ``rating`` of 1..5 as ``(rating - 1) / 4``, a bare
  ``success`` flag as 1 or 0.

Why Beta posteriors rather than Normal ones: the reward is bounded in [0, 1] and mostly
success-driven, so a Beta is its natural conjugate family (a fractional reward ``r`` adds
``r`` to alpha and ``1 - r`` to beta, the usual generalisation of the Bernoulli update); its
draws stay in [0, 1] with no variance to estimate, and ``random.betavariate`` costs about a
microsecond. A Normal model would need a noise scale that differs between backends and
tuning to avoid over- or under-exploring.

Forgetting (``forgetting = g`` in [0, 1)): discounted Thompson sampling (Raj & Kalyani 2017).
At every observation for a model, the evidence of *all* its backends is multiplied by
``1 - g`` (prior kept), so an observation's weight halves after ``ln 2 / g`` observations and
the posterior holds about ``1 / g`` observations' worth of evidence: a backend whose quality
drifts is re-learned, and one not chosen for a while regains uncertainty and is tried again.
The discount is applied lazily (each arm stores the step it was last brought up to date), so
an update costs O(1) whatever the number of backends.

Posteriors are saved as versioned JSON (:meth:`ThompsonLearner.save`, :meth:`load`).
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import ConfigError, InputError, StorageFormatError

if TYPE_CHECKING:
    from workbench.router.balancer import BackendState, Outcome

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "RewardSettings",
    "ThompsonLearner",
    "ThompsonStrategy",
    "feedback_reward",
    "outcome_reward",
]

FORMAT = "workbench.router.thompson"
FORMAT_VERSION = 1
PRIOR_ALPHA = PRIOR_BETA = 1.0


@dataclass(frozen=True)
class RewardSettings:
    """How outcomes become rewards in [0, 1].

    Attributes:
        latency_weight: Share of a success's reward that depends on latency, in [0, 1].
        latency_scale_s: Latency at which the latency score is 1/2 (seconds, > 0).
        quality_weight: Weight of a feedback observation relative to an outcome (> 0).
    """

    latency_weight: float = 0.3
    latency_scale_s: float = 1.0
    quality_weight: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.latency_weight <= 1.0:
            raise ConfigError(f"latency_weight={self.latency_weight!r}: must be in [0, 1]")
        if not self.latency_scale_s > 0:
            raise ConfigError(f"latency_scale_s={self.latency_scale_s!r}: must be > 0")
        if not self.quality_weight > 0:
            raise ConfigError(f"quality_weight={self.quality_weight!r}: must be > 0")


def outcome_reward(outcome: Outcome, settings: RewardSettings = RewardSettings()) -> float:
    """The reward of one request's outcome (module doc); a known quality is blended in."""
    if not outcome.success:
        return 0.0
    s = 1.0 / (1.0 + max(0.0, outcome.latency_s) / settings.latency_scale_s)
    r = (1.0 - settings.latency_weight) + settings.latency_weight * s
    if outcome.quality is not None:
        r = 0.5 * r + 0.5 * min(1.0, max(0.0, outcome.quality))
    return r


def feedback_reward(
    *, success: bool | None = None, quality: float | None = None, rating: float | None = None
) -> float:
    """A feedback observation's reward: ``quality``, else ``(rating - 1) / 4``, else success.

    Raises:
        InputError: nothing given, ``quality`` outside [0, 1] or ``rating`` outside [1, 5].
    """
    if quality is not None:
        if not (isinstance(quality, int | float) and 0.0 <= quality <= 1.0):
            raise InputError(
                f"quality={quality!r}: must be a number in [0, 1]", details={"field": "quality"}
            )
        return float(quality)
    if rating is not None:
        if not (isinstance(rating, int | float) and 1.0 <= rating <= 5.0):
            raise InputError(
                f"rating={rating!r}: must be a number in [1, 5]", details={"field": "rating"}
            )
        return (float(rating) - 1.0) / 4.0
    if success is not None:
        return 1.0 if success else 0.0
    raise InputError(
        "feedback needs one of success, quality (0..1) or rating (1..5)",
        details={"field": "quality"},
    )


class _Arm:
    __slots__ = ("a", "b", "step")

    def __init__(self, a: float = 0.0, b: float = 0.0, step: int = 0) -> None:
        self.a, self.b, self.step = a, b, step  # evidence beyond the prior


class ThompsonLearner:
    """Beta posteriors per (key, backend), with optional discounting (module doc).

    Args:
        forgetting: Discount per observation of a key, in [0, 1); 0 keeps all evidence.
        settings: Reward settings.
    """

    def __init__(self, *, forgetting: float = 0.0, settings: RewardSettings | None = None):
        if not (isinstance(forgetting, int | float) and 0.0 <= forgetting < 1.0):
            raise ConfigError(
                f"forgetting={forgetting!r}: must be in [0, 1) (0: no forgetting)",
                details={"field": "forgetting"},
            )
        self.forgetting = float(forgetting)
        self.settings = settings or RewardSettings()
        self._keep = 1.0 - self.forgetting
        self._arms: dict[str, dict[str, _Arm]] = {}
        self._steps: dict[str, int] = {}

    def _fresh(self, key: str, arm: _Arm) -> _Arm:
        n = self._steps.get(key, 0)
        if arm.step != n:
            if self.forgetting:
                f = self._keep ** (n - arm.step)
                arm.a *= f
                arm.b *= f
            arm.step = n
        return arm

    def _arm(self, key: str, backend: str) -> _Arm:
        arms = self._arms.setdefault(key, {})
        arm = arms.get(backend)
        if arm is None:
            arm = arms[backend] = _Arm(step=self._steps.get(key, 0))
        return self._fresh(key, arm)

    def posterior(self, key: str, backend: str) -> tuple[float, float]:
        """``(alpha, beta)`` of the backend's posterior for ``key`` now."""
        arm = self._arm(key, backend)
        return PRIOR_ALPHA + arm.a, PRIOR_BETA + arm.b

    def mean(self, key: str, backend: str) -> float:
        a, b = self.posterior(key, backend)
        return a / (a + b)

    def choose(self, key: str, backends: Sequence[str], rng: random.Random) -> int:
        """Index of the backend with the highest posterior draw (Thompson sampling)."""
        best, best_draw = 0, -1.0
        for i, name in enumerate(backends):
            a, b = self.posterior(key, name)
            draw = rng.betavariate(a, b)
            if draw > best_draw:
                best, best_draw = i, draw
        return best

    def update(self, key: str, backend: str, reward: float, weight: float = 1.0) -> None:
        """Add one observation of ``reward`` in [0, 1] with ``weight`` (discounting first)."""
        if not 0.0 <= reward <= 1.0 or not weight > 0 or math.isnan(reward):
            raise InputError(
                f"reward={reward!r}, weight={weight!r}: reward must be in [0, 1], weight > 0",
                details={"field": "reward"},
            )
        self._steps[key] = self._steps.get(key, 0) + 1
        arm = self._arm(key, backend)
        arm.a += weight * reward
        arm.b += weight * (1.0 - reward)

    def observe(self, key: str, backend: str, outcome: Outcome) -> None:
        self.update(key, backend, outcome_reward(outcome, self.settings))

    def feedback(
        self,
        key: str,
        backend: str,
        *,
        success: bool | None = None,
        quality: float | None = None,
        rating: float | None = None,
    ) -> None:
        r = feedback_reward(success=success, quality=quality, rating=rating)
        self.update(key, backend, r, self.settings.quality_weight)

    def keys(self) -> list[str]:
        return sorted(self._arms)

    def snapshot(self) -> dict[str, dict[str, dict[str, float]]]:
        """Posterior parameters and means by key and backend."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for key, arms in self._arms.items():
            out[key] = {}
            for name in arms:
                a, b = self.posterior(key, name)
                out[key][name] = {"alpha": a, "beta": b, "mean": a / (a + b)}
        return out

    # -- persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        arms = {
            key: {name: [arm.a, arm.b, arm.step] for name, arm in group.items()}
            for key, group in self._arms.items()
        }
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "forgetting": self.forgetting,
            "steps": dict(self._steps),
            "arms": arms,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the posteriors to ``path`` atomically (a temporary file, then rename)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_dict(), f)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_dict(self, data: Mapping[str, Any]) -> None:
        """Replace the posteriors with saved ones (all or nothing).

        Raises:
            StorageFormatError: not this format, an unknown version, or malformed content.
        """
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise StorageFormatError(f"not a {FORMAT} file", details={"field": "format"})
        if data.get("version") != FORMAT_VERSION:
            raise StorageFormatError(
                f"{FORMAT} version {data.get('version')!r} is not supported; "
                f"this version reads version {FORMAT_VERSION}",
                details={"field": "version"},
            )
        try:
            steps = {str(k): int(v) for k, v in data["steps"].items()}
            arms: dict[str, dict[str, _Arm]] = {}
            for key, group in data["arms"].items():
                arms[str(key)] = {}
                for name, (a, b, step) in group.items():
                    a, b, step = float(a), float(b), int(step)
                    if not (a >= 0 and b >= 0 and 0 <= step <= steps.get(str(key), 0)):
                        raise ValueError(f"bad arm {key}/{name}")
                    arms[str(key)][str(name)] = _Arm(a, b, step)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StorageFormatError(
                f"{FORMAT} content is malformed: {exc}", details={"field": "arms"}
            ) from None
        self._arms, self._steps = arms, steps

    def load(self, path: str | os.PathLike[str]) -> None:
        """Load posteriors saved by :meth:`save` (a missing file leaves the priors)."""
        p = Path(path)
        if not p.exists():
            return
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise StorageFormatError(f"{p}: cannot read posteriors: {exc}") from None
        self.load_dict(data)


class ThompsonStrategy:
    """The ``thompson`` strategy: a :class:`ThompsonLearner` keyed by the requested model.

    Args:
        learner: The learner (one is made from ``forgetting`` when None).
        forgetting: Discount per observation when a learner is made here.
        state_path: Where posteriors are loaded from at start and saved by :meth:`save`.
    """

    name = "thompson"

    def __init__(
        self,
        learner: ThompsonLearner | None = None,
        *,
        forgetting: float = 0.0,
        state_path: str | None = None,
    ) -> None:
        self.learner = learner or ThompsonLearner(forgetting=forgetting)
        self.state_path = state_path
        if state_path:
            self.learner.load(state_path)

    def pick(
        self,
        candidates: Sequence[BackendState],
        *,
        model: str,
        text: str,
        now: float,
        rng: random.Random,
    ) -> int:
        return self.learner.choose(model, [c.config.name for c in candidates], rng)

    def observe(self, backend: BackendState, outcome: Outcome, *, model: str, now: float) -> None:
        self.learner.observe(model, backend.config.name, outcome)

    def feedback(self, model: str, backend: str, **kw: Any) -> None:
        self.learner.feedback(model, backend, **kw)

    def save(self) -> None:
        if self.state_path:
            self.learner.save(self.state_path)

    def names(self) -> Iterable[str]:
        return self.learner.keys()
