"""The platform's rule-based task profiles, used as the cold-start prior, and the LLM space.

:func:`get_task_parameters` reproduces the platform's profile table and adjustment order
(complexity, domain, user preferences, output length). One deliberate change: the domain
adjustments are deltas (documented in :data:`DOMAIN_ADJUSTMENTS`) instead of the platform's
absolute overwrites (``maxTokens := 512`` for academic, ``contextLength := 4096`` for
technical, ``maxTokens := 256`` for business), which discarded the profile and the earlier
adjustments.

:func:`llm_space` is the search space of LLM sampling parameters for one task type, centred
on that task's profile, and :func:`profile_params` the profile as a point of that space, which
the :class:`~workbench.optimize.feedback.FeedbackLearner` evaluates first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from workbench.errors import InputError
from workbench.optimize.space import Int, Real, SearchSpace

__all__ = [
    "DOMAIN_ADJUSTMENTS",
    "PROFILES",
    "TASK_TYPES",
    "TaskParameters",
    "get_task_parameters",
    "llm_space",
    "profile_params",
]

TASK_TYPES = (
    "code_generation",
    "code_review",
    "code_debugging",
    "code_explanation",
    "code_refactoring",
    "data_analysis",
    "text_analysis",
    "document_analysis",
    "research",
    "creative_writing",
    "content_generation",
    "brainstorming",
    "story_generation",
    "factual_qa",
    "reasoning",
    "explanation",
    "tutorial",
    "casual_chat",
    "professional_consultation",
    "technical_support",
    "translation",
    "summarization",
    "classification",
    "extraction",
    "image_analysis",
    "image_description",
    "visual_reasoning",
    "model_training",
    "dataset_preparation",
)


@dataclass(frozen=True)
class TaskParameters:
    """LLM call parameters (the platform's ``TaskParameters``, numeric part).

    Attributes:
        context_length: Context window to use, tokens.
        temperature: Sampling temperature.
        top_p: Nucleus sampling mass.
        max_tokens: Output budget, tokens.
        presence_penalty: Presence penalty.
        frequency_penalty: Frequency penalty.
    """

    context_length: int
    temperature: float
    top_p: float
    max_tokens: int
    presence_penalty: float
    frequency_penalty: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _p(ctx: int, t: float, top: float, mx: int, pp: float, fp: float) -> TaskParameters:
    return TaskParameters(ctx, t, top, mx, pp, fp)


#: Base profiles (context, temperature, top-p, max tokens, presence, frequency).
PROFILES: dict[str, TaskParameters] = {
    "code_generation": _p(8192, 0.2, 0.9, 2048, 0.1, 0.1),
    "code_review": _p(16384, 0.1, 0.8, 1024, 0.0, 0.0),
    "code_debugging": _p(12288, 0.1, 0.8, 1536, 0.0, 0.0),
    "creative_writing": _p(8192, 0.8, 0.95, 2048, 0.6, 0.3),
    "brainstorming": _p(4096, 0.9, 0.95, 1024, 0.8, 0.4),
    "data_analysis": _p(16384, 0.2, 0.9, 2048, 0.1, 0.1),
    "research": _p(20480, 0.3, 0.9, 3072, 0.2, 0.1),
    "factual_qa": _p(8192, 0.1, 0.8, 512, 0.0, 0.0),
    "reasoning": _p(12288, 0.2, 0.9, 1536, 0.1, 0.1),
    "casual_chat": _p(4096, 0.7, 0.9, 512, 0.3, 0.2),
    "technical_support": _p(8192, 0.2, 0.9, 1024, 0.1, 0.1),
    "summarization": _p(16384, 0.2, 0.9, 1024, 0.1, 0.2),
    "translation": _p(8192, 0.1, 0.8, 2048, 0.0, 0.0),
    "image_analysis": _p(4096, 0.3, 0.9, 1024, 0.2, 0.1),
    "visual_reasoning": _p(6144, 0.4, 0.9, 1536, 0.2, 0.1),
    "model_training": _p(2048, 0.1, 0.8, 512, 0.0, 0.0),
}
_DEFAULT = _p(4096, 0.5, 0.9, 1024, 0.1, 0.1)

#: Domain adjustments as deltas/factors: temperature delta, max-tokens factor,
#: context factor, and (creative) penalties set.
DOMAIN_ADJUSTMENTS: dict[str, dict[str, float]] = {
    "academic": {"temperature": -0.1, "max_tokens_factor": 0.75},
    "creative": {"temperature": 0.2, "presence_penalty": 0.2, "frequency_penalty": 0.1},
    "technical": {"temperature": -0.1, "context_factor": 0.75},
    "business": {"temperature": -0.05, "max_tokens_factor": 0.5},
}


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def get_task_parameters(
    task_type: str,
    *,
    complexity: str = "medium",
    domain: str | None = None,
    preferences: Mapping[str, Any] | None = None,
    output_length: str = "medium",
) -> TaskParameters:
    """The rule-based parameters of a task, adjusted in the platform's order.

    Args:
        task_type: One of :data:`TASK_TYPES` (others get the default profile).
        complexity: ``simple`` (context and tokens x0.7, T -0.1), ``medium`` or ``complex``
            (context x1.5, tokens x1.3, T +0.1); T is clamped to [0, 1].
        domain: ``academic``, ``creative``, ``technical`` or ``business`` (see
            :data:`DOMAIN_ADJUSTMENTS`).
        preferences: ``preferred_temperature`` (overrides T), else ``creativity``
            (conservative -0.2, balanced 0, creative +0.3); ``preferred_length`` (concise
            x0.7, detailed x1.2, comprehensive x1.5 tokens); ``writing_style`` (formal: T -0.1
            floored at 0.1 and presence -0.1; casual: T +0.1 capped at 0.9, presence +0.1).
        output_length: ``short`` (tokens and context x0.5), ``medium`` or ``long`` (tokens
            x1.8, context x1.2).
    """
    if complexity not in ("simple", "medium", "complex"):
        raise InputError(f"complexity={complexity!r} must be simple, medium or complex")
    if output_length not in ("short", "medium", "long"):
        raise InputError(f"output_length={output_length!r} must be short, medium or long")
    p = PROFILES.get(task_type, _DEFAULT)
    ctx, t, mx = float(p.context_length), p.temperature, float(p.max_tokens)
    pp, fp = p.presence_penalty, p.frequency_penalty
    if complexity == "simple":
        ctx, mx, t = ctx * 0.7, mx * 0.7, t - 0.1
    elif complexity == "complex":
        ctx, mx, t = ctx * 1.5, mx * 1.3, t + 0.1
    t = _clamp(t, 0.0, 1.0)
    if domain is not None:
        adj = DOMAIN_ADJUSTMENTS.get(domain)
        if adj is None:
            raise InputError(f"domain={domain!r} must be one of {sorted(DOMAIN_ADJUSTMENTS)}")
        t += adj.get("temperature", 0.0)
        mx *= adj.get("max_tokens_factor", 1.0)
        ctx *= adj.get("context_factor", 1.0)
        pp = adj.get("presence_penalty", pp)
        fp = adj.get("frequency_penalty", fp)
    prefs = dict(preferences or {})
    if prefs.get("preferred_temperature") is not None:
        t = float(prefs["preferred_temperature"])
    else:
        t += {"conservative": -0.2, "balanced": 0.0, "creative": 0.3}.get(
            prefs.get("creativity", "balanced"), 0.0
        )
    mx *= {"concise": 0.7, "detailed": 1.2, "comprehensive": 1.5}.get(
        prefs.get("preferred_length", ""), 1.0
    )
    style = prefs.get("writing_style")
    if style == "formal":
        t, pp = max(0.1, t - 0.1), pp - 0.1
    elif style == "casual":
        t, pp = min(0.9, t + 0.1), pp + 0.1
    if output_length == "short":
        mx, ctx = mx * 0.5, ctx * 0.5
    elif output_length == "long":
        mx, ctx = mx * 1.8, ctx * 1.2
    return TaskParameters(
        context_length=round(ctx),
        temperature=round(_clamp(t, 0.0, 2.0), 4),
        top_p=p.top_p,
        max_tokens=max(1, round(mx)),
        presence_penalty=round(_clamp(pp, -2.0, 2.0), 4),
        frequency_penalty=round(_clamp(fp, -2.0, 2.0), 4),
    )


def llm_space(task_type: str = "default") -> SearchSpace:
    """Search space of LLM sampling parameters for a task type.

    The platform's per-task ranges (creative writing T 0.7-1.2, tokens 500-8000; code
    generation T 0.1-0.5, tokens 100-2000; data analysis T 0.2-0.8, tokens 200-3000; default
    T 0.1-1.0, tokens 50-4000, top-p 0.1-1, penalties 0-2), widened to contain the task's
    rule-based profile so the cold-start point is always inside.
    """
    t_lo, t_hi, k_lo, k_hi = {
        "creative_writing": (0.7, 1.2, 500, 8000),
        "code_generation": (0.1, 0.5, 100, 2000),
        "data_analysis": (0.2, 0.8, 200, 3000),
    }.get(task_type, (0.1, 1.0, 50, 4000))
    prof = PROFILES.get(task_type, _DEFAULT)
    t_lo, t_hi = min(t_lo, prof.temperature), max(t_hi, prof.temperature)
    k_lo, k_hi = min(k_lo, prof.max_tokens), max(k_hi, prof.max_tokens)
    return SearchSpace(
        {
            "temperature": Real(t_lo, t_hi),
            "top_p": Real(0.1, 1.0),
            "max_tokens": Int(k_lo, k_hi, log=True),
            "presence_penalty": Real(0.0, 2.0),
            "frequency_penalty": Real(0.0, 2.0),
        }
    )


def profile_params(task_type: str) -> dict[str, Any]:
    """The task's rule-based profile as a configuration of :func:`llm_space`."""
    p = PROFILES.get(task_type, _DEFAULT)
    p = replace(
        p,
        presence_penalty=max(0.0, p.presence_penalty),
        frequency_penalty=max(0.0, p.frequency_penalty),
    )
    return {
        "temperature": p.temperature,
        "top_p": p.top_p,
        "max_tokens": p.max_tokens,
        "presence_penalty": p.presence_penalty,
        "frequency_penalty": p.frequency_penalty,
    }
