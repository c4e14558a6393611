"""Rule-based complexity tiers: the platform's coordinator rule table, applied to the request.

The platform's fast coordinator (its Rust ``fast-llm-coordinator`` crate) decides which kind
of backend a request needs from a small rule table. This module ports that table and its
scoring, and the ``tiers`` strategy maps the winning target to backends by capability tag
(a backend tagged ``fast`` or ``small`` takes simple requests, one tagged ``code`` takes
programming requests, ...).

Complexity (:func:`estimate_complexity`): ``complex`` when a complex keyword appears
(analyze, explain, research, comprehensive, detailed), or creativity or a long answer is asked
for, or the text exceeds 500 characters; ``simple`` when the text is under 100 characters with
no complex keyword and accuracy is not required; ``medium`` otherwise. The crate's "simple
keywords" list is not part of the reference, so the simple rule is the TypeScript
coordinator's (short and no complex keyword).

Rule score (:func:`score_rules`): each rule starts from its weight and multiplies in one factor
per condition it has: token limit met 1, else 0.5; complexity match 1, else 0.3; keywords
present ``1 + 0.1 * matches``, else 0.2; urgency match 1.2 for ``high`` and 1.0 for the others,
mismatch 0.7; creativity match 1, else 0.8. The highest score wins and is the decision's
``confidence`` (it can exceed 1, as on the platform); below 0.5 the decision falls back to
``ollama`` with confidence 0.5. Tokens are estimated as ``ceil(len / 4)``; priority is
1, 3 or 5 by urgency, plus 0, 1 or 2 for confidence above 0.8, above 0.6, or below (capped
at 5).

The platform's bug, fixed here: its heuristic scored the whole *routing prompt* (the rules
text, which contains "Analyze", wrapped around the request), so every request read as
``medium`` and went to the same backend. Here the text is the user's request: the proxy
passes the last user message (:func:`last_user_text`), never a prompt built around it.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from workbench.errors import ConfigError

if TYPE_CHECKING:
    from workbench.router.balancer import BackendState, Outcome

__all__ = [
    "COMPLEX_KEYWORDS",
    "RULES",
    "TIER_TAGS",
    "Rule",
    "RuleContext",
    "RuleDecision",
    "TierStrategy",
    "decide",
    "estimate_complexity",
    "estimate_tokens",
    "last_user_text",
    "score_rules",
]

COMPLEX_KEYWORDS = ("analyze", "explain", "research", "comprehensive", "detailed")
CODE_KEYWORDS = ("code", "program", "function", "debug", "implement", "algorithm")
URGENCIES = ("low", "medium", "high")
COMPLEXITIES = ("simple", "medium", "complex")
FALLBACK_TARGET, FALLBACK_CONFIDENCE = "ollama", 0.5
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class RuleContext:
    """What the caller says about a request (the platform's ``CoordinationContext``).

    Attributes:
        urgency: ``low``, ``medium`` or ``high``.
        requires_creativity: Creative writing is asked for.
        requires_accuracy: Exact answers are needed (a short request is then not ``simple``).
            The platform's default was always true (an ``||`` bug); here it is false.
        expected_long: A long answer is expected (``expectedResponseLength == "long"``).
    """

    urgency: str = "medium"
    requires_creativity: bool = False
    requires_accuracy: bool = False
    expected_long: bool = False

    def __post_init__(self) -> None:
        if self.urgency not in URGENCIES:
            raise ConfigError(
                f"urgency={self.urgency!r} is unknown; use one of {', '.join(URGENCIES)}"
            )


@dataclass(frozen=True)
class Rule:
    """One row of the rule table; ``None`` conditions are not scored.

    Attributes:
        name: Rule name (``lfm2_simple``).
        target: The platform service it routes to (``lfm2``, ``ollama``, ``lm-studio``,
            ``openai``, ``anthropic``).
        weight: Starting score.
        max_tokens: Token limit of the request (estimated tokens).
        complexity: Complexity the rule wants.
        keywords: Words of which at least one must appear.
        urgency: Urgency the rule wants.
        creativity: Whether the rule wants creative requests.
    """

    name: str
    target: str
    weight: float
    max_tokens: int | None = None
    complexity: str | None = None
    keywords: tuple[str, ...] = ()
    urgency: str | None = None
    creativity: bool | None = None


#: The platform's rule table (``crates/fast-llm-coordinator``), in its order.
RULES: tuple[Rule, ...] = (
    Rule("lfm2_simple", "lfm2", 1.0, max_tokens=100, complexity="simple", urgency="high"),
    Rule("ollama_general", "ollama", 0.8, max_tokens=1000, complexity="medium"),
    Rule("lmstudio_technical", "lm-studio", 0.9, max_tokens=2000, keywords=CODE_KEYWORDS),
    Rule("openai_creative", "openai", 0.7, max_tokens=4000, complexity="complex", creativity=True),
    Rule("anthropic_analysis", "anthropic", 0.8, complexity="complex", keywords=COMPLEX_KEYWORDS),
)

#: Capability tags that serve each rule target, in order of preference.
TIER_TAGS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "lfm2": ("fast", "small"),
        "ollama": ("medium", "general", "local"),
        "lm-studio": ("code",),
        "openai": ("creative", "large"),
        "anthropic": ("analysis", "large"),
    }
)


@dataclass(frozen=True)
class RuleDecision:
    """The outcome of the rule table for one request.

    Attributes:
        target: Winning rule's target service (or the ``ollama`` fallback).
        rule: Winning rule's name (``"fallback"`` for the fallback).
        confidence: Winning score (may exceed 1).
        complexity: Estimated complexity of the text.
        estimated_tokens: ``ceil(len(text) / 4)``.
        priority: 1 (most urgent) to 5.
        scores: Every rule's score, by rule name.
    """

    target: str
    rule: str
    confidence: float
    complexity: str
    estimated_tokens: int
    priority: int
    scores: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "rule": self.rule,
            "confidence": self.confidence,
            "complexity": self.complexity,
            "estimated_tokens": self.estimated_tokens,
            "priority": self.priority,
            "scores": dict(self.scores),
        }


def estimate_tokens(text: str) -> int:
    """The platform's token estimate: ``ceil(len(text) / 4)``."""
    return math.ceil(len(text) / 4)


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _matches(words: set[str], keywords: Iterable[str]) -> int:
    # "analyze" also matches "analyzes"/"analyzed"/"analysis"-like stems of the keyword.
    return sum(1 for k in keywords if any(w.startswith(k) for w in words))


def estimate_complexity(text: str, context: RuleContext | None = None) -> str:
    """``simple``, ``medium`` or ``complex`` for a request text (rules in the module doc)."""
    return _complexity(text, _words(text), context or RuleContext())


def _complexity(text: str, words: set[str], ctx: RuleContext) -> str:
    if (
        _matches(words, COMPLEX_KEYWORDS)
        or ctx.requires_creativity
        or ctx.expected_long
        or len(text) > 500
    ):
        return "complex"
    if len(text) < 100 and not ctx.requires_accuracy:
        return "simple"
    return "medium"


def score_rules(
    text: str, context: RuleContext | None = None, rules: Sequence[Rule] = RULES
) -> dict[str, float]:
    """Each rule's score for ``text`` (the product of its weight and condition factors)."""
    ctx = context or RuleContext()
    words = _words(text)
    return _scores(text, words, _complexity(text, words, ctx), ctx, rules)


def _scores(
    text: str, words: set[str], complexity: str, ctx: RuleContext, rules: Sequence[Rule]
) -> dict[str, float]:
    tokens = estimate_tokens(text)
    scores: dict[str, float] = {}
    for rule in rules:
        s = rule.weight
        if rule.max_tokens is not None:
            s *= 1.0 if tokens <= rule.max_tokens else 0.5
        if rule.complexity is not None:
            s *= 1.0 if complexity == rule.complexity else 0.3
        if rule.keywords:
            m = _matches(words, rule.keywords)
            s *= 1.0 + 0.1 * m if m else 0.2
        if rule.urgency is not None:
            if ctx.urgency == rule.urgency:
                s *= 1.2 if rule.urgency == "high" else 1.0
            else:
                s *= 0.7
        if rule.creativity is not None:
            s *= 1.0 if ctx.requires_creativity == rule.creativity else 0.8
        scores[rule.name] = s
    return scores


def decide(
    text: str, context: RuleContext | None = None, rules: Sequence[Rule] = RULES
) -> RuleDecision:
    """The rule table's decision for a request text (the user's text, not a routing prompt)."""
    ctx = context or RuleContext()
    words = _words(text)
    complexity = _complexity(text, words, ctx)
    scores = _scores(text, words, complexity, ctx, rules)
    best = max(rules, key=lambda r: scores[r.name])  # first of equals, in table order
    target, name, confidence = best.target, best.name, scores[best.name]
    if confidence < FALLBACK_CONFIDENCE:
        target, name, confidence = FALLBACK_TARGET, "fallback", FALLBACK_CONFIDENCE
    base = {"high": 1, "medium": 3, "low": 5}[ctx.urgency]
    bump = 0 if confidence > 0.8 else 1 if confidence > 0.6 else 2
    return RuleDecision(
        target=target,
        rule=name,
        confidence=round(confidence, 6),
        complexity=complexity,
        estimated_tokens=estimate_tokens(text),
        priority=min(5, base + bump),
        scores=MappingProxyType(scores),
    )


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the last ``user`` message of an OpenAI ``messages`` list ('' if none).

    Content may be a string or a list of parts (``{"type": "text", "text": ...}``); non-text
    parts are skipped.
    """
    for message in reversed(messages):
        if not isinstance(message, Mapping) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            parts = [
                p.get("text", "")
                for p in content
                if isinstance(p, Mapping) and p.get("type") == "text"
            ]
            return "\n".join(t for t in parts if isinstance(t, str))
        return ""
    return ""


class TierStrategy:
    """The ``tiers`` strategy: the rule table's target picks a tier of backends by tag.

    Candidates carrying one of the target's tags (:data:`TIER_TAGS`, earlier tags preferred)
    form the tier; within it the one with the lowest load cost (P2C-EWMA's score, errors
    penalised: :meth:`~workbench.router.balancer.BackendState.load_cost`) wins (ties at
    random). When no candidate has a matching tag, every candidate is the tier.

    Args:
        tier_tags: Tags by rule target (defaults to :data:`TIER_TAGS`).
        rules: The rule table (defaults to :data:`RULES`).
        context: The context every request is scored with.
    """

    name = "tiers"

    def __init__(
        self,
        *,
        tier_tags: Mapping[str, Sequence[str]] = TIER_TAGS,
        rules: Sequence[Rule] = RULES,
        context: RuleContext | None = None,
    ) -> None:
        self.tier_tags = {k: tuple(v) for k, v in tier_tags.items()}
        self.rules = tuple(rules)
        self.context = context or RuleContext()
        self.last_decision: RuleDecision | None = None

    def tier(self, candidates: Sequence[BackendState], text: str) -> list[int]:
        """Indices of the candidates in the tier the rules pick for ``text``."""
        decision = decide(text, self.context, self.rules)
        self.last_decision = decision
        for tag in self.tier_tags.get(decision.target, ()):
            chosen = [i for i, c in enumerate(candidates) if tag in c.config.tags]
            if chosen:
                return chosen
        return list(range(len(candidates)))

    def pick(
        self,
        candidates: Sequence[BackendState],
        *,
        model: str,
        text: str,
        now: float,
        rng: random.Random,
    ) -> int:
        tier = self.tier(candidates, text)
        costs = [candidates[i].load_cost(now) for i in tier]
        low = min(costs)
        best = [i for i, c in zip(tier, costs, strict=True) if c == low]
        return best[0] if len(best) == 1 else best[rng.randrange(len(best))]

    def observe(self, backend: BackendState, outcome: Outcome, *, model: str, now: float) -> None:
        """Nothing to learn: the rules are fixed."""
