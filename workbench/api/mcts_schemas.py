"""Request bodies of the AB-MCTS routes (``/api/v1/ab-mcts/*``) and of the native bridge's
(``/api/v1/ab-mcts-rust/*``), in the platform's camelCase (either spelling is accepted, unknown
members are ignored; see :class:`~workbench.api.wire.WireModel`).

Every field is bounded, and a value outside its bounds is a 400 ``VALIDATION_ERROR`` naming
the field (the bounds also appear in the OpenAPI document):

===========================================  ===============================================
field                                        bound
===========================================  ===============================================
``userRequest``, ``task``                    1..10,000 characters
``context``, ``contextData``                 a JSON object of at most 256 members, 16 levels
                                             deep and 64 KiB (65,536 bytes) as compact UTF-8
                                             JSON
``context.taskType``, ``taskType``           1..128 characters (an empty ``context.taskType``
                                             means ``general``)
agent names (``availableAgents``,            1..128 characters, unique, at most 100 (and at
``context.agents``, ``agentName``)           most ``[mcts] max_agents``)
``sessionId``, ``userId``                    1..256 characters (``userId`` may be empty)
``orchestrationId``                          1..128 characters
``comment``                                  at most 2,000 characters
``requirements``, ``constraints``            at most 100 items of at most 1,000 characters
``priority``                                 0..100 (higher runs first)
``maxIterations``                            at least 1 and at most ``[mcts]
                                             max_iterations`` (10,000 by default)
``maxDepth``                                 1..50
``timeLimitMs``                              1..300,000
``seed``                                     0..2**63 - 1
``explorationConstant``                      0..100
``checkpointInterval``                       1..1,000,000
``budget``, ``maxCost``                      0..1e9
``timeoutMs``                                1..3,600,000
``executionTimeMs``                          0..86,400,000 (24 hours)
``tokensUsed``                               0..1e8
``apiCallsMade``                             0..1,000,000
``agentPerformance``                         a JSON object of at most 100 members, 8 levels
                                             deep and 16 KiB
``timestamp``                                any JSON value of at most 256 bytes
rewards and their components                 0..1
===========================================  ===============================================

``taskType`` of ``GET /models`` is read, never stored, and takes any string (an unknown one
has no rankings). The OpenAPI schemas of ``context`` and ``contextData`` name the members the
service reads (``taskType``, ``agents``; either may be null), so a fuzzer generates them
within their bounds. The limit on iterations is a setting: the document states the default
(10,000), which a server configured with a larger ``[mcts] max_iterations`` exceeds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field
from pydantic.json_schema import JsonDict

from workbench.api.wire import WireModel
from workbench.mcts.autopilot import MAX_CONTEXT_BYTES, encode_context
from workbench.mcts.orchestrate import MAX_ITERATIONS
from workbench.mcts.service import (
    ITERATIONS_CEILING,
    MAX_COMMENT_LENGTH,
    MAX_EXECUTION_TIME_MS,
    MAX_NAME_LENGTH,
    MAX_SEED,
    MAX_TOKENS,
)

__all__ = [
    "MAX_CONTEXT_DEPTH",
    "MAX_CONTEXT_MEMBERS",
    "MAX_REQUEST_LENGTH",
    "BatchBody",
    "BatchItem",
    "ExecutionContext",
    "FeedbackBody",
    "ModelsQuery",
    "OrchestrateBody",
    "OrchestrateOptionsBody",
    "RewardComponents",
    "RewardMetadata",
    "RustContext",
    "RustFeedbackBody",
    "RustOptions",
    "RustRecommendBody",
    "RustReward",
    "RustSearchBody",
    "RustTestBody",
    "SubmitBody",
    "UserPreferences",
]

#: Longest ``userRequest`` and ``task``, characters.
MAX_REQUEST_LENGTH = 10_000
#: Deepest nesting of a ``context`` or ``contextData`` (``{"a": 1}`` is 1 level).
MAX_CONTEXT_DEPTH = 16
#: Most members of a ``context`` or ``contextData``.
MAX_CONTEXT_MEMBERS = 256
_MAX_AGENTS = 100
_MAX_ID_LENGTH = 128
_MAX_SESSION_LENGTH = 256
_MAX_LIST_ITEMS = 100
_MAX_ITEM_LENGTH = 1000
_MAX_PRIORITY = 100
_MAX_COST = 1e9
_MAX_TIMEOUT_MS = 3_600_000
_MAX_API_CALLS = 1_000_000
_MAX_EXPLORATION = 100.0


def _depth(value: Any, limit: int) -> int:
    """Levels of nested objects and arrays in ``value`` (counting stops past ``limit``)."""
    depth, level = 0, [value]
    while level and depth <= limit:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            break
        depth += 1
        level = [x for c in containers for x in (c.values() if isinstance(c, dict) else c)]
    return depth


def _bounded_json(max_bytes: int, max_depth: int) -> AfterValidator:
    """A validator refusing JSON deeper than ``max_depth`` or larger than ``max_bytes``
    (compact UTF-8 JSON, as :func:`~workbench.mcts.autopilot.encode_context` measures)."""

    def check(value: Any) -> Any:
        if _depth(value, max_depth) > max_depth:
            raise ValueError(f"nested more than {max_depth} levels deep; at most {max_depth}")
        size = len(encode_context(value))
        if size > max_bytes:
            raise ValueError(f"{size} bytes of JSON; at most {max_bytes}")
        return value

    return AfterValidator(check)


_NAME_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}
_TASK_TYPE_SCHEMA = {"type": ["string", "null"], "maxLength": MAX_NAME_LENGTH}
_CONTEXT_DESCRIPTION = (
    f"JSON object of at most {MAX_CONTEXT_MEMBERS} members, {MAX_CONTEXT_DEPTH} levels deep "
    f"and {MAX_CONTEXT_BYTES} bytes as compact UTF-8 JSON"
)
#: A request's ``context``: its ``taskType`` names the models used and its ``agents`` the
#: candidates (the configured agents when absent or empty).
Context = Annotated[
    dict[str, Any],
    Field(
        max_length=MAX_CONTEXT_MEMBERS,
        description=_CONTEXT_DESCRIPTION,
        json_schema_extra={
            "properties": {
                "taskType": _TASK_TYPE_SCHEMA,
                "agents": {
                    "type": ["array", "null"],
                    "items": _NAME_SCHEMA,
                    "maxItems": _MAX_AGENTS,
                    "uniqueItems": True,
                },
            }
        },
    ),
    _bounded_json(MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH),
]
#: The bridge's ``contextData``: its ``taskType`` names the models used.
ContextData = Annotated[
    dict[str, Any],
    Field(
        max_length=MAX_CONTEXT_MEMBERS,
        description=_CONTEXT_DESCRIPTION,
        json_schema_extra={"properties": {"taskType": _TASK_TYPE_SCHEMA}},
    ),
    _bounded_json(MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH),
]
AgentPerformance = Annotated[
    dict[str, Any],
    Field(
        max_length=_MAX_AGENTS,
        description="JSON object of at most 100 members, 8 levels deep and 16384 bytes",
    ),
    _bounded_json(16 * 1024, 8),
]
Timestamp = Annotated[
    Any, Field(description="any JSON value of at most 256 bytes"), _bounded_json(256, 4)
]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
Request = Annotated[str, Field(min_length=1, max_length=MAX_REQUEST_LENGTH)]
Item = Annotated[str, Field(max_length=_MAX_ITEM_LENGTH)]
Seed = Annotated[int | None, Field(ge=0, le=MAX_SEED)]
Agents = Annotated[
    list[Name],
    Field(min_length=1, max_length=_MAX_AGENTS, json_schema_extra={"uniqueItems": True}),
]
_ITERATIONS = "at most [mcts] max_iterations (10,000 by default; 400 beyond)"
# Checked by the service against the configured limit; the document states the default.
_ITERATIONS_SCHEMA: JsonDict = {"maximum": MAX_ITERATIONS}


class OrchestrateOptionsBody(WireModel):
    use_cache: bool = True
    enable_parallelism: bool = True
    collect_feedback: bool = True
    save_checkpoints: bool = False
    visualize: bool = False
    verbose_logging: bool = False
    fallback_strategy: Literal["greedy", "random", "fixed"] = "greedy"
    max_iterations: int | None = Field(
        default=None, ge=1, description=_ITERATIONS, json_schema_extra=_ITERATIONS_SCHEMA
    )
    max_depth: int | None = Field(default=None, ge=1, le=50)
    seed: Seed = None


class OrchestrateBody(WireModel):
    user_request: Request
    context: Context = Field(default_factory=dict)
    options: OrchestrateOptionsBody = Field(default_factory=OrchestrateOptionsBody)


class BatchItem(WireModel):
    user_request: Request
    context: Context = Field(default_factory=dict)


class BatchBody(WireModel):
    requests: list[BatchItem] = Field(min_length=1, max_length=100)
    options: OrchestrateOptionsBody = Field(default_factory=OrchestrateOptionsBody)


class FeedbackBody(WireModel):
    orchestration_id: str = Field(min_length=1, max_length=_MAX_ID_LENGTH)
    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=MAX_COMMENT_LENGTH)


class ModelsQuery(WireModel):
    task_type: str = "general"


class SubmitBody(WireModel):
    user_request: Request
    context: Context = Field(default_factory=dict)
    priority: int = Field(default=5, ge=0, le=_MAX_PRIORITY, description="higher runs first")


class UserPreferences(WireModel):
    preferred_agents: list[Name] | None = Field(default=None, max_length=_MAX_AGENTS)
    quality_vs_speed: float | None = Field(default=None, ge=0, le=1)
    max_cost: float | None = Field(default=None, ge=0, le=_MAX_COST)
    timeout_ms: int | None = Field(default=None, ge=1, le=_MAX_TIMEOUT_MS)


class ExecutionContext(WireModel):
    session_id: str = Field(min_length=1, max_length=_MAX_SESSION_LENGTH)
    user_id: str | None = Field(default=None, max_length=_MAX_SESSION_LENGTH)
    timestamp: Timestamp = None
    budget: float = Field(default=100.0, ge=0, le=_MAX_COST)
    priority: Literal["Low", "Normal", "High", "Critical"] = "Normal"


class RustContext(WireModel):
    task: Request
    requirements: list[Item] = Field(default_factory=list, max_length=_MAX_LIST_ITEMS)
    constraints: list[Item] = Field(default_factory=list, max_length=_MAX_LIST_ITEMS)
    context_data: ContextData = Field(default_factory=dict)
    user_preferences: UserPreferences | None = None
    execution_context: ExecutionContext


class RustOptions(WireModel):
    max_iterations: int = Field(
        default=1000, ge=1, description=_ITERATIONS, json_schema_extra=_ITERATIONS_SCHEMA
    )
    max_depth: int = Field(default=10, ge=1, le=50)
    time_limit_ms: int = Field(default=30_000, ge=1, le=300_000)
    exploration_constant: float = Field(default=1.414, ge=0, le=_MAX_EXPLORATION)
    discount_factor: float = Field(default=0.95, ge=0, le=1)
    parallel_simulations: int = Field(default=4, ge=1, le=16)
    checkpoint_interval: int = Field(default=100, ge=1, le=ITERATIONS_CEILING)
    enable_caching: bool = True
    verbose_logging: bool = False
    seed: Seed = None


class RustSearchBody(WireModel):
    context: RustContext
    available_agents: Agents
    options: RustOptions = Field(default_factory=RustOptions)


class RustRecommendBody(WireModel):
    context: RustContext
    available_agents: Agents
    max_recommendations: int = Field(default=3, ge=1, le=20)


class RustTestBody(WireModel):
    test_type: Literal["simple", "complex", "load"] = "simple"
    agent_count: int = Field(default=5, ge=1, le=20)


class RewardComponents(WireModel):
    quality: float = Field(ge=0, le=1)
    speed: float = Field(ge=0, le=1)
    cost: float = Field(ge=0, le=1)
    user_satisfaction: float | None = Field(default=None, ge=0, le=1)


class RewardMetadata(WireModel):
    tokens_used: float = Field(default=0, ge=0, le=MAX_TOKENS)
    api_calls_made: int = Field(default=0, ge=0, le=_MAX_API_CALLS)
    execution_time_ms: float = Field(default=0, ge=0, le=MAX_EXECUTION_TIME_MS)
    agent_performance: AgentPerformance = Field(default_factory=dict)


class RustReward(WireModel):
    value: float = Field(ge=0, le=1)
    components: RewardComponents
    metadata: RewardMetadata = Field(default_factory=RewardMetadata)


class RustFeedbackBody(WireModel):
    session_id: str = Field(min_length=1, max_length=_MAX_SESSION_LENGTH)
    agent_name: Name
    reward: RustReward
    task_type: Name = "general"
    orchestration_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=_MAX_ID_LENGTH,
        description="the search's orchestrationId: the reward is credited once to what ran "
        "(without it, once per sessionId, agentName and taskType)",
    )
