"""The platform's coordinator rule table and the ``tiers`` strategy."""

from __future__ import annotations

import json
import random

import pytest

from workbench.errors import ConfigError
from workbench.router.balancer import Router
from workbench.router.config import BackendConfig, RouterConfig
from workbench.router.rules import (
    RuleContext,
    TierStrategy,
    decide,
    estimate_complexity,
    estimate_tokens,
    last_user_text,
    score_rules,
)

SIMPLE = "What is 2+2?"
CODE = "Write a Python function to debug this algorithm"
ANALYSIS = "Analyze and explain the comprehensive history of the Roman empire"
MEDIUM = (
    "Tell me about the weather patterns in the north of Europe during the late autumn "
    "months, and how they differ"
)


def routing_prompt(request: str) -> str:
    """The prompt the platform built around a request before scoring it (§5.3 step 1)."""
    context = {"taskType": "general", "complexity": "medium", "urgency": "medium"}
    return (
        "Analyze this request and decide which service should handle it.\n"
        f'Request: "{request}"\n'
        f"Context: {json.dumps(context)}\n"
        "Rules:\n"
        "- lfm2: simple questions, under 100 tokens\n"
        "- ollama: medium complexity, under 1000 tokens\n"
        "- lm-studio: code generation, under 2000 tokens\n"
        "- openai: complex reasoning or creative tasks, over 1000 tokens\n"
        "- anthropic: analysis, research, long-form content\n"
        'Respond with JSON: {"service": ..., "reasoning": ..., "confidence": 0..1}'
    )


def test_complexity_follows_the_rules() -> None:
    assert estimate_complexity(SIMPLE) == "simple"
    assert estimate_complexity(MEDIUM) == "medium"  # 100+ characters, no keyword
    assert estimate_complexity(ANALYSIS) == "complex"  # keywords
    assert estimate_complexity("x" * 501) == "complex"  # length
    assert estimate_complexity(SIMPLE, RuleContext(requires_creativity=True)) == "complex"
    assert estimate_complexity(SIMPLE, RuleContext(expected_long=True)) == "complex"
    assert estimate_complexity(SIMPLE, RuleContext(requires_accuracy=True)) == "medium"
    assert estimate_tokens("abcde") == 2 and estimate_tokens("") == 0


@pytest.mark.parametrize(
    ("text", "ctx", "target", "confidence", "priority"),
    [
        # lfm2_simple: 1.0 * tokens 1 * complexity 1 * urgency mismatch 0.7
        (SIMPLE, RuleContext(), "lfm2", 0.7, 4),
        # ... and 1.2 for a matching high urgency; priority base 1, confidence > 0.8
        (SIMPLE, RuleContext(urgency="high"), "lfm2", 1.2, 1),
        # lmstudio_technical: 0.9 * (1 + 0.1 * 3 keywords) * tokens 1
        (CODE, RuleContext(), "lm-studio", 1.17, 3),
        # anthropic_analysis: 0.8 * (1 + 0.1 * 3) * complexity 1
        (ANALYSIS, RuleContext(), "anthropic", 1.04, 3),
        # openai_creative: 0.7 * tokens 1 * complexity 1 * creativity 1
        ("Write a poem about the sea", RuleContext(requires_creativity=True), "openai", 0.7, 4),
        # ollama_general: 0.8 * tokens 1 * complexity 1; 0.8 is not "above 0.8": +1
        (MEDIUM, RuleContext(), "ollama", 0.8, 4),
    ],
)
def test_platform_examples(
    text: str, ctx: RuleContext, target: str, confidence: float, priority: int
) -> None:
    d = decide(text, ctx)
    assert d.target == target
    assert d.confidence == pytest.approx(confidence)
    assert d.priority == priority
    assert d.estimated_tokens == estimate_tokens(text)
    assert d.to_dict()["scores"] == dict(score_rules(text, ctx))


def test_low_scores_fall_back_to_ollama() -> None:
    # A long, low-urgency, keyword-free text: every rule scores below 0.5.
    text = "word " * 4000  # 20,000 characters, 5000 tokens: complex, over every limit
    d = decide(text, RuleContext(urgency="low"))
    assert max(d.scores.values()) < 0.5
    assert (d.target, d.rule, d.confidence, d.priority) == ("ollama", "fallback", 0.5, 5)


def test_the_platform_bug_scoring_the_routing_prompt_routes_everything_alike() -> None:
    """The platform scored the routing prompt (which says "Analyze"), so every request had the
    same complexity and a simple one never reached the small model. Scored on the user's
    text, the four requests get four different targets."""
    requests = [SIMPLE, CODE, ANALYSIS, MEDIUM]
    prompts = [routing_prompt(r) for r in requests]
    assert {estimate_complexity(p) for p in prompts} == {"complex"}  # the bug, reproduced
    assert all(decide(p).target not in ("lfm2", "ollama") for p in prompts)
    on_text = [decide(r).target for r in requests]
    assert on_text == ["lfm2", "lm-studio", "anthropic", "ollama"]


def test_last_user_text_skips_system_and_earlier_turns() -> None:
    messages = [
        {"role": "system", "content": routing_prompt("anything")},
        {"role": "user", "content": "Analyze the whole codebase in detail"},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": [{"type": "text", "text": SIMPLE}, {"type": "image_url"}]},
    ]
    assert last_user_text(messages) == SIMPLE
    assert last_user_text([{"role": "system", "content": "x"}]) == ""
    assert last_user_text([{"role": "user", "content": None}]) == ""


def _config() -> RouterConfig:
    def b(name: str, tags: tuple[str, ...]) -> BackendConfig:
        return BackendConfig(name, f"http://127.0.0.1:9/{name}/v1", ("chat",), tags=tags)

    return RouterConfig(
        backends=(
            b("small", ("fast", "small")),
            b("coder", ("code",)),
            b("big", ("analysis", "large")),
            b("general", ("general",)),
        ),
        strategy="tiers",
    )


def test_tiers_route_the_users_text_to_the_tagged_backend() -> None:
    router = Router(_config(), clock=lambda: 0.0, rng=random.Random(0))
    for text, expected in [(SIMPLE, "small"), (CODE, "coder"), (ANALYSIS, "big")]:
        messages = [
            {"role": "system", "content": routing_prompt(text)},
            {"role": "user", "content": text},
        ]
        plan = router.plan("chat", text=last_user_text(messages))
        assert plan[0].name == expected
        assert {s.name for s in plan} == {"small", "coder", "big", "general"}  # fallbacks
    assert router.plan("chat", text=MEDIUM)[0].name == "general"


def test_tiers_without_a_matching_tag_use_every_candidate() -> None:
    strategy = TierStrategy(tier_tags={"lfm2": ("nonexistent",)})
    router = Router(_config(), clock=lambda: 0.0, rng=random.Random(1))
    picks = {
        router.backends[
            strategy.pick(
                router.backends, model="chat", text=SIMPLE, now=0.0, rng=random.Random(seed)
            )
        ].name
        for seed in range(40)
    }
    assert picks == {"small", "coder", "big", "general"}  # ties broken at random
    assert strategy.last_decision is not None and strategy.last_decision.target == "lfm2"


def test_context_is_validated() -> None:
    with pytest.raises(ConfigError, match="urgency"):
        RuleContext(urgency="urgent")
