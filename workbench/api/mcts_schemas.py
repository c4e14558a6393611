"""Request bodies of the AB-MCTS routes (``/api/v1/ab-mcts/*``) and of the native bridge's
(``/api/v1/ab-mcts-rust/*``), in the platform's camelCase (either spelling is accepted, unknown
members are ignored; see :class:`~workbench.api.wire.WireModel`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from workbench.api.wire import WireModel

__all__ = [
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


class OrchestrateOptionsBody(WireModel):
    use_cache: bool = True
    enable_parallelism: bool = True
    collect_feedback: bool = True
    save_checkpoints: bool = False
    visualize: bool = False
    verbose_logging: bool = False
    fallback_strategy: Literal["greedy", "random", "fixed"] = "greedy"
    max_iterations: int | None = Field(default=None, ge=1)
    max_depth: int | None = Field(default=None, ge=1, le=50)
    seed: int | None = None


class OrchestrateBody(WireModel):
    user_request: str = Field(min_length=1)
    context: dict[str, Any] = Field(default_factory=dict)
    options: OrchestrateOptionsBody = Field(default_factory=OrchestrateOptionsBody)


class BatchItem(WireModel):
    user_request: str = Field(min_length=1)
    context: dict[str, Any] = Field(default_factory=dict)


class BatchBody(WireModel):
    requests: list[BatchItem] = Field(min_length=1, max_length=100)
    options: OrchestrateOptionsBody = Field(default_factory=OrchestrateOptionsBody)


class FeedbackBody(WireModel):
    orchestration_id: str = Field(min_length=1)
    rating: int = Field(ge=1, le=5)
    comment: str | None = None


class ModelsQuery(WireModel):
    task_type: str = "general"


class SubmitBody(WireModel):
    user_request: str = Field(min_length=1)
    context: dict[str, Any] = Field(default_factory=dict)
    priority: int = 5


class UserPreferences(WireModel):
    preferred_agents: list[str] | None = None
    quality_vs_speed: float | None = Field(default=None, ge=0, le=1)
    max_cost: float | None = None
    timeout_ms: int | None = None


class ExecutionContext(WireModel):
    session_id: str = Field(min_length=1)
    user_id: str | None = None
    timestamp: Any = None
    budget: float = 100.0
    priority: Literal["Low", "Normal", "High", "Critical"] = "Normal"


class RustContext(WireModel):
    task: str = Field(min_length=1, max_length=10_000)
    requirements: list[str] = Field(default_factory=list)
    constraints: list[str] = Field(default_factory=list)
    context_data: dict[str, Any] = Field(default_factory=dict)
    user_preferences: UserPreferences | None = None
    execution_context: ExecutionContext


class RustOptions(WireModel):
    max_iterations: int = Field(default=1000, ge=1)
    max_depth: int = Field(default=10, ge=1, le=50)
    time_limit_ms: int = Field(default=30_000, ge=1, le=300_000)
    exploration_constant: float = Field(default=1.414, ge=0)
    discount_factor: float = Field(default=0.95, ge=0, le=1)
    parallel_simulations: int = Field(default=4, ge=1, le=16)
    checkpoint_interval: int = 100
    enable_caching: bool = True
    verbose_logging: bool = False
    seed: int | None = None


class RustSearchBody(WireModel):
    context: RustContext
    available_agents: list[str] = Field(min_length=1, max_length=100)
    options: RustOptions = Field(default_factory=RustOptions)


class RustRecommendBody(WireModel):
    context: RustContext
    available_agents: list[str] = Field(min_length=1, max_length=100)
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
    tokens_used: float = Field(default=0, ge=0)
    api_calls_made: int = Field(default=0, ge=0)
    execution_time_ms: float = Field(default=0, ge=0)
    agent_performance: dict[str, Any] = Field(default_factory=dict)


class RustReward(WireModel):
    value: float = Field(ge=0, le=1)
    components: RewardComponents
    metadata: RewardMetadata = Field(default_factory=RewardMetadata)


class RustFeedbackBody(WireModel):
    session_id: str = Field(min_length=1)
    agent_name: str = Field(min_length=1)
    reward: RustReward
    task_type: str = "general"
