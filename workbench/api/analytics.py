"""HTTP routes of parameter analytics under ``/api/v1/parameter-analytics-rust`` (raw bodies).

The platform's routes with their shapes, camelCase on the wire (this module is the only place
that maps the names; the domain is :class:`~workbench.analytics.service.AnalyticsService`):

- ``POST /execution``: one record; ``POST /batch-execution`` ``{executions: [1..100]}``:
  ``{results, errors: [{index, error, field}], totalProcessed, successfulProcessed,
  successRate}`` (a bad record is reported in ``errors`` with its index, the good ones are
  stored; a malformed request, such as an empty list or a member that is no object, is a 400
  naming the field);
- ``POST /effectiveness`` with the filter ``{taskTypes?, models?, providers?, complexity?,
  timeRange?{start, end}, minExecutions?, minConfidence?, limit?}``; ``POST /insights``
  ``{taskType, complexity?}``; ``GET /analytics`` (a snapshot of the store); ``GET /dashboard``
  (the last 24 hours); ``POST /feedback`` ``{executionId, satisfaction?, quality?}`` (counted
  once: a second feedback replaces the first; an unknown id is 404);
- ``POST /performance-test`` ``{testType simple|complex, operations 1..10000, taskType}``:
  measured on a scratch store (never constants), at most ``[analytics] perf_time_limit_s``;
- ``GET /version``, ``GET /stats`` (the service's counters and its own uptime), ``GET
  /health`` (no token; 503 when the store does not answer).

Replies are ``{success: true, result, processingTimeMs, timestamp}`` (the platform's router);
the batch reply holds its members at the top level beside ``success``. Errors use the
service-wide error body.

**Durability.** A 200 from ``execution`` or ``batch-execution`` means the records are
committed. With the query ``?mode=async`` they are validated, buffered and committed within
``[analytics] flush_interval_s``, and the answer is 202 (``durable: false``); a full buffer is
a 503 with ``Retry-After`` (back-pressure, never unbounded memory), as is a store call queue
past ``[analytics] max_pending``. ``mode`` is read by the handler rather than declared as a
query model, because the generated OpenAPI document lists one success status per route.

**Records** (members of ``execution`` and of each batch item): ``executionId`` (1-128
printable characters; the idempotency key: a replay is a duplicate, never counted twice),
``timestamp`` (ISO 8601 or epoch seconds; default: when received), ``taskType`` (1-64 of
``[A-Za-z0-9_.:-]``), ``model``, ``provider``, ``userId``, ``sessionId``, ``parameters`` (a
JSON object), ``promptTokens``/``completionTokens`` (or the platform's ``tokenUsage
{promptTokens, completionTokens, totalTokens}``), ``executionTime`` or ``latencyMs`` (ms, one
is required), ``cost``, ``success``, ``errorType``, ``responseQuality`` or ``quality`` (0-1),
``userSatisfaction`` (0-5), ``complexity``. Bounds are those of
:mod:`workbench.analytics.records`; snake_case names are accepted too.

Every route but ``health`` needs the API token when one is configured. The service runs in
one owner worker (the embedded DuckDB store admits one writing process).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import ConfigDict, Field, StringConstraints, ValidationError, model_validator

from workbench.analytics.records import Rejection
from workbench.analytics.service import (
    MAX_BATCH,
    MAX_PERF_OPERATIONS,
    AnalyticsConfig,
    AnalyticsService,
)
from workbench.analytics.stats import Dashboard, Insight, Recommendation
from workbench.analytics.store import Filters
from workbench.api.routing import ApiRequest, ApiRouter, Reply
from workbench.api.services import ServiceSpec
from workbench.api.wire import WireModel
from workbench.config import Settings
from workbench.errors import InputError, NotFoundError

__all__ = ["SERVICE", "router", "to_record"]


def _build(config: AnalyticsConfig, settings: Settings) -> AnalyticsService:
    return AnalyticsService(config)


#: The analytics service: built at start-up in the worker that owns it, closed with the app.
SERVICE: ServiceSpec[AnalyticsConfig, AnalyticsService] = ServiceSpec(
    "analytics",
    config=AnalyticsConfig.from_settings,
    build=_build,
    close=AnalyticsService.close,
)

router = ApiRouter(
    "/api/v1/parameter-analytics-rust", tag="parameter-analytics", envelope=False, service=SERVICE
)

TaskType = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Short = Annotated[str, StringConstraints(max_length=64)]
Ident = Annotated[str, StringConstraints(max_length=128)]
Complexity = Literal["simple", "medium", "complex", ""]
Tokens = Annotated[int, Field(ge=0, le=10_000_000)]
Latency = Annotated[float, Field(ge=0, le=3_600_000)]
Unit = Annotated[float, Field(ge=0, le=1)]
Satisfaction = Annotated[float, Field(ge=0, le=5)]
_MAX_FILTER_VALUES = 100
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)

#: Wire names of the record's columns, for messages naming a field.
WIRE_FIELDS = {
    "execution_id": "executionId",
    "timestamp": "timestamp",
    "task_type": "taskType",
    "model": "model",
    "provider": "provider",
    "user_id": "userId",
    "session_id": "sessionId",
    "parameters": "parameters",
    "parameter_hash": "parameterHash",
    "prompt_tokens": "promptTokens",
    "completion_tokens": "completionTokens",
    "latency_ms": "latencyMs",
    "cost": "cost",
    "success": "success",
    "error_class": "errorType",
    "quality": "quality",
    "user_satisfaction": "userSatisfaction",
    "complexity": "complexity",
}

_EXAMPLE: dict[str, Any] = {
    "executionId": "exec-0001",
    "timestamp": "2025-06-01T12:00:00Z",
    "taskType": "code_generation",
    "model": "gpt-4o",
    "provider": "openai",
    "parameters": {"temperature": 0.2, "maxTokens": 1024, "topP": 0.9},
    "tokenUsage": {"promptTokens": 120, "completionTokens": 340, "totalTokens": 460},
    "executionTime": 812.5,
    "cost": 0.0042,
    "success": True,
    "responseQuality": 0.86,
    "complexity": "medium",
}

# "executionTime or latencyMs", said in the schema too, so clients and fuzzers know.
_LATENCY_GIVEN: dict[str, Any] = {
    "anyOf": [
        {"required": ["latencyMs"], "properties": {"latencyMs": {"type": "number"}}},
        {"required": ["executionTime"], "properties": {"executionTime": {"type": "number"}}},
    ],
    "examples": [_EXAMPLE],
}


class TokenUsage(WireModel):
    prompt_tokens: Tokens | None = Field(default=None, description="0-10,000,000.")
    completion_tokens: Tokens | None = Field(default=None, description="0-10,000,000.")
    total_tokens: Annotated[int, Field(ge=0, le=20_000_000)] | None = Field(
        default=None, description="Ignored beyond its bounds (the sum of the other two)."
    )


class ExecutionBody(WireModel):
    """One execution record (see the module docstring for every bound)."""

    model_config = ConfigDict(json_schema_extra=_LATENCY_GIVEN)

    execution_id: Name = Field(description="1-128 printable characters; the idempotency key.")
    timestamp: datetime | Annotated[float, Field(ge=0, le=1e11)] | None = Field(
        default=None,
        description="ISO 8601 (no offset: UTC) or epoch seconds, 2000-01-01 to one day from "
        "now; default: when received.",
    )
    task_type: TaskType = Field(description="1-64 characters of [A-Za-z0-9_.:-].")
    model: Name = Field(description="1-128 characters.")
    provider: Short | None = Field(default=None, description="0-64 characters ('unknown').")
    user_id: Ident | None = Field(default=None, description="0-128 characters.")
    session_id: Ident | None = Field(default=None, description="0-128 characters.")
    parameters: dict[str, Any] = Field(
        max_length=64,
        description="The parameter set: a JSON object, depth <= 4, <= 64 keys per object, "
        "<= 4096 bytes as canonical JSON, finite numbers.",
    )
    prompt_tokens: Tokens | None = None
    completion_tokens: Tokens | None = None
    token_usage: TokenUsage | None = Field(
        default=None, description="The platform's form of promptTokens and completionTokens."
    )
    latency_ms: Latency | None = Field(default=None, description="Milliseconds, 0-3,600,000.")
    execution_time: Latency | None = Field(
        default=None, description="The platform's name of latencyMs."
    )
    cost: Annotated[float, Field(ge=0, le=1_000_000)] | None = None
    success: bool
    error_type: Short | None = Field(default=None, description="0-64 characters.")
    quality: Unit | None = Field(default=None, description="0-1; null: unknown.")
    response_quality: Unit | None = Field(
        default=None, description="The platform's name of quality."
    )
    user_satisfaction: Satisfaction | None = Field(default=None, description="0-5.")
    complexity: Complexity | None = None

    @model_validator(mode="after")
    def _latency(self) -> ExecutionBody:
        if self.latency_ms is None and self.execution_time is None:
            raise ValueError("give latencyMs or executionTime (milliseconds)")
        return self


def _one(a: Any, b: Any, names: tuple[str, str]) -> Any:
    """``a`` or ``b``; both given and different is an error naming the pair."""
    if a is not None and b is not None and a != b:
        raise InputError(
            f"{names[0]}={a!r} and {names[1]}={b!r} disagree; send one of them",
            details=[{"field": names[0], "message": f"disagrees with {names[1]}"}],
        )
    return a if a is not None else b


def to_record(body: ExecutionBody, now: datetime) -> dict[str, Any]:
    """The snake_case record of a validated wire record (``timestamp`` defaults to ``now``).

    Raises:
        InputError: Two spellings of one value disagree (``latencyMs``/``executionTime``,
            ``quality``/``responseQuality``, the token counts and ``tokenUsage``).
    """
    usage = body.token_usage
    prompt = _one(
        body.prompt_tokens,
        None if usage is None else usage.prompt_tokens,
        ("promptTokens", "tokenUsage.promptTokens"),
    )
    completion = _one(
        body.completion_tokens,
        None if usage is None else usage.completion_tokens,
        ("completionTokens", "tokenUsage.completionTokens"),
    )
    record: dict[str, Any] = {
        "execution_id": body.execution_id,
        "timestamp": now if body.timestamp is None else body.timestamp,
        "task_type": body.task_type,
        "model": body.model,
        "parameters": body.parameters,
        "latency_ms": _one(body.latency_ms, body.execution_time, ("latencyMs", "executionTime")),
        "success": body.success,
        "quality": _one(body.quality, body.response_quality, ("quality", "responseQuality")),
    }
    optional = {
        "provider": body.provider,
        "user_id": body.user_id,
        "session_id": body.session_id,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost": body.cost,
        "error_class": body.error_type,
        "user_satisfaction": body.user_satisfaction,
        "complexity": body.complexity,
    }
    record.update({k: v for k, v in optional.items() if v is not None})
    return record


class BatchBody(WireModel):
    executions: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="1-100 records (members as for POST /execution); each bad one is "
        "reported in errors with its index, the others are stored.",
        json_schema_extra={"examples": [[dict(_EXAMPLE)]]},
    )


class TimeRange(WireModel):
    start: datetime | None = Field(default=None, description="Inclusive (no offset: UTC).")
    end: datetime | None = Field(default=None, description="Exclusive (no offset: UTC).")


class EffectivenessBody(WireModel):
    task_types: list[TaskType] | None = Field(default=None, max_length=_MAX_FILTER_VALUES)
    models: list[Name] | None = Field(default=None, max_length=_MAX_FILTER_VALUES)
    providers: list[Short] | None = Field(default=None, max_length=_MAX_FILTER_VALUES)
    complexity: Complexity | list[Complexity] | None = Field(
        default=None, description="One complexity or a list of them."
    )
    time_range: TimeRange | None = None
    min_executions: Annotated[int, Field(ge=0, le=10**12)] | None = None
    min_confidence: Unit | None = Field(
        default=None, description="Least confidence min(0.95, n/100), 0-1."
    )
    limit: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        default=None,
        description="Most rows listed, best score first (at most [analytics] "
        "max_effectiveness_rows, 1000).",
    )


class InsightsBody(WireModel):
    task_type: TaskType
    complexity: Literal["simple", "medium", "complex"] | None = Field(
        default=None, description="Recommend only sets whose maxTokens fits this complexity."
    )


# "satisfaction or quality", said in the schema too.
_SOME_FEEDBACK: dict[str, Any] = {
    "anyOf": [
        {"required": ["satisfaction"], "properties": {"satisfaction": {"type": "number"}}},
        {"required": ["quality"], "properties": {"quality": {"type": "number"}}},
    ]
}


class FeedbackBody(WireModel):
    model_config = ConfigDict(json_schema_extra=_SOME_FEEDBACK)

    execution_id: Name
    satisfaction: Satisfaction | None = Field(default=None, description="0-5.")
    quality: Unit | None = Field(default=None, description="0-1.")

    @model_validator(mode="after")
    def _something(self) -> FeedbackBody:
        if self.satisfaction is None and self.quality is None:
            raise ValueError("give satisfaction (0-5) or quality (0-1)")
        return self


class PerformanceBody(WireModel):
    test_type: Literal["simple", "complex"] = Field(
        default="simple", description="simple: validate and ingest; complex: also aggregate."
    )
    operations: Annotated[int, Field(ge=1, le=MAX_PERF_OPERATIONS)] = Field(
        default=1000, description="Records to ingest, 1-10000."
    )
    task_type: TaskType = Field(default="general", description="Task type of the records.")


# -- helpers ---------------------------------------------------------------------------------


def _service(req: ApiRequest) -> AnalyticsService:
    return SERVICE.of(req)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reply(result: Any, start: float, status: int = 200) -> Reply:
    return Reply(
        {
            "success": True,
            "result": result,
            "processingTimeMs": (time.perf_counter() - start) * 1000.0,
            "timestamp": _now_iso(),
        },
        status=status,
    )


def _mode(req: ApiRequest) -> str:
    raw = req.request.query.get("mode", "durable")
    if raw not in ("durable", "async"):
        raise InputError(
            f"query mode={raw[:40]!r} must be 'durable' (200 once committed) or 'async' "
            "(202 once buffered)",
            details=[{"field": "mode", "message": "durable or async"}],
        )
    return raw


def _first_error(exc: ValidationError) -> tuple[str, str]:
    e = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in e["loc"]) or "record"
    return where, f"{where}: {e['msg']}"


def _rejection(r: Rejection, index: int) -> dict[str, Any]:
    field = WIRE_FIELDS.get(r.field, r.field)
    return {"index": index, "field": field, "error": f"{field}: {r.reason}"}


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # No record lies outside these; clamping keeps the filter's meaning and pandas' range.
    return min(max(moment, _EARLIEST), _LATEST)


def _filters(body: EffectivenessBody) -> Filters:
    complexity = body.complexity
    if isinstance(complexity, str):
        complexity = [complexity]
    span = body.time_range or TimeRange()
    try:
        return Filters(
            task_types=tuple(body.task_types or ()),
            models=tuple(body.models or ()),
            providers=tuple(body.providers or ()),
            complexity=tuple(complexity or ()),
            start=_utc(span.start),
            end=_utc(span.end),
            min_executions=body.min_executions or 0,
            min_confidence=body.min_confidence or 0.0,
        )
    except InputError as exc:
        raise InputError(exc.message, details=[{"field": "timeRange"}]) from None


def _iso(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).isoformat()


def _effectiveness_row(row: dict[str, Any]) -> dict[str, Any]:
    n = int(row["executions"])
    tokens = int(row["prompt_tokens_total"]) + int(row["completion_tokens_total"])
    return {
        "taskType": row["task_type"],
        "parameterSet": row["parameter_hash"],
        "parameters": row.get("parameters"),
        "totalExecutions": n,
        "successes": int(row["successes"]),
        "successRate": row["success_rate"],
        "avgExecutionTime": row["latency_mean_ms"],
        "latencyP50Ms": row["latency_p50_ms"],
        "latencyP95Ms": row["latency_p95_ms"],
        "latencyP99Ms": row["latency_p99_ms"],
        "avgTokenUsage": tokens / n if n else None,
        "promptTokensTotal": int(row["prompt_tokens_total"]),
        "completionTokensTotal": int(row["completion_tokens_total"]),
        "costTotal": row["cost_total"],
        "avgResponseQuality": row["quality_mean"],
        "avgUserSatisfaction": row["satisfaction_mean"],
        "score": row["score"],
        "confidenceScore": row["confidence"],
        "firstSeen": _iso(row["first_timestamp"]),
        "lastUpdated": _iso(row["last_timestamp"]),
    }


def _insight(i: Insight) -> dict[str, Any]:
    return {
        "taskType": i.task_type,
        "insight": i.insight,
        "recommendation": i.recommendation,
        "impact": i.impact,
        "confidence": i.confidence,
        "supportingData": {
            "sampleSize": i.sample_size,
            "improvementPercent": i.improvement_percent,
            "currentMetric": i.current_metric,
            "optimizedMetric": i.optimized_metric,
        },
        "bestParameterSet": i.best_parameter_hash,
        "bestParameters": None if i.best_parameters is None else dict(i.best_parameters),
    }


def _recommendation(r: Recommendation) -> dict[str, Any]:
    return {
        "recommended": dict(r.recommended),
        "confidence": r.confidence,
        "reasoning": r.reasoning,
        "alternativeOptions": [
            {
                "parameters": None if a.parameters is None else dict(a.parameters),
                "expectedPerformance": a.expected_performance,
                "tradeoffs": a.tradeoffs,
                "parameterSet": a.parameter_hash,
            }
            for a in r.alternative_options
        ],
        "parameterSet": r.parameter_hash,
    }


def _camel_keys(row: Any) -> dict[str, Any]:
    from pydantic.alias_generators import to_camel

    return {to_camel(str(k)): v for k, v in dict(row).items()}


def _dashboard(d: Dashboard) -> dict[str, Any]:
    return {
        "windowStart": d.window_start.isoformat(),
        "windowEnd": d.window_end.isoformat(),
        "totalExecutions": d.total_executions,
        "successRate": d.success_rate,
        "avgResponseTime": d.avg_response_time_ms,
        "topPerformingTasks": [
            {"taskType": t.task_type, "executions": t.executions, "successRate": t.success_rate}
            for t in d.top_performing_tasks
        ],
        "recentInsights": [_insight(i) for i in d.recent_insights],
        "parameterTrends": [_camel_keys(t) for t in d.parameter_trends],
    }


def _camel_tree(value: Any) -> Any:
    """snake_case keys of service answers (no user data inside) to camelCase."""
    from pydantic.alias_generators import to_camel

    if isinstance(value, dict):
        return {to_camel(str(k)): _camel_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel_tree(v) for v in value]
    return value


async def _store(
    svc: AnalyticsService, records: list[dict[str, Any]], mode: str
) -> tuple[int, int, list[Rejection], bool]:
    """``(accepted, duplicates, rejections, durable)`` of one ingest or submit."""
    if mode == "async":
        done = await svc.call(svc.submit, records)
        return done.accepted, 0, done.rejected, False
    report = await svc.call(svc.ingest, records)
    return report.accepted, report.duplicates, report.rejected, True


_MODE_DOC = (
    " Query mode=durable (default: 200 once committed) or mode=async (202 once buffered; "
    "503 with Retry-After while the buffer is full)."
)


# -- routes ----------------------------------------------------------------------------------


@router.post(
    "/execution",
    body=ExecutionBody,
    summary="Record one execution",
    description="A 200 means the record is committed; a record already stored is a duplicate "
    "(``duplicate: true``) and changes nothing. A record the store refuses is a 400 naming "
    "the field." + _MODE_DOC,
    rate_limit=200,
    rate_setting="requests_per_min",
)
async def execution(req: ApiRequest) -> Any:
    start = time.perf_counter()
    svc = _service(req)
    mode = _mode(req)
    body: ExecutionBody = req.body
    record = to_record(body, svc.now())
    _, duplicates, rejected, durable = await _store(svc, [record], mode)
    if rejected:
        problem = _rejection(rejected[0], 0)
        raise InputError(
            f"invalid record field '{problem['field']}': {rejected[0].reason}",
            details=[{"field": problem["field"], "message": rejected[0].reason}],
        )
    result = {
        "processed": True,
        "executionId": body.execution_id,
        "duplicate": duplicates > 0,
        "durable": durable,
        "mode": mode,
    }
    return _reply(result, start, 200 if durable else 202)


@router.post(
    "/batch-execution",
    body=BatchBody,
    summary="Record 1-100 executions",
    description="Each bad record is reported in ``errors`` (``index``, ``field``, ``error``) "
    "and the others are stored in one transaction; ``accepted`` and ``duplicates`` count "
    "the stored ones (a replay is a duplicate, never counted twice)." + _MODE_DOC,
    rate_limit=200,
    rate_setting="requests_per_min",
)
async def batch_execution(req: ApiRequest) -> Any:
    start = time.perf_counter()
    svc = _service(req)
    mode = _mode(req)
    body: BatchBody = req.body
    now = svc.now()
    errors: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    positions: list[int] = []
    ids: list[str] = []
    for index, item in enumerate(body.executions):
        try:
            parsed = ExecutionBody.model_validate_json(json.dumps(item), strict=True)
            record = to_record(parsed, now)
        except ValidationError as exc:
            field, message = _first_error(exc)
            errors.append({"index": index, "field": field, "error": message})
            continue
        except InputError as exc:
            field = exc.details[0]["field"] if exc.details else "record"
            errors.append({"index": index, "field": field, "error": exc.message})
            continue
        records.append(record)
        positions.append(index)
        ids.append(parsed.execution_id)
    accepted = duplicates = 0
    durable = mode == "durable"
    refused: set[int] = set()
    if records:
        accepted, duplicates, rejected, durable = await _store(svc, records, mode)
        for r in rejected:
            refused.add(r.index)
            errors.append(_rejection(r, positions[r.index]))
    errors.sort(key=lambda e: int(e["index"]))
    results = [
        {"index": positions[i], "executionId": ids[i], "processed": True}
        for i in range(len(records))
        if i not in refused
    ]
    total = len(body.executions)
    payload = {
        "success": True,
        "results": results,
        "errors": errors,
        "totalProcessed": total,
        "successfulProcessed": len(results),
        "successRate": len(results) / total,
        "accepted": accepted if durable else len(results),
        "duplicates": duplicates,
        "durable": durable,
        "mode": mode,
        "processingTimeMs": (time.perf_counter() - start) * 1000.0,
        "timestamp": _now_iso(),
    }
    return Reply(payload, status=200 if durable else 202)


@router.post(
    "/effectiveness",
    body=EffectivenessBody,
    summary="Effectiveness per (task type, parameter set), best score first",
    description="Rows carry the platform's aggregates (success rate, mean execution time, "
    "token usage, quality, satisfaction, confidence) plus exact latency percentiles and the "
    "weighted score (time term clamped at 0; missing quality or satisfaction renormalises "
    "the weights). ``total`` counts every matching group.",
    rate_limit=200,
    rate_setting="requests_per_min",
)
async def effectiveness(req: ApiRequest) -> Any:
    start = time.perf_counter()
    svc = _service(req)
    body: EffectivenessBody = req.body
    rows, total = await svc.call(svc.effectiveness, _filters(body), limit=body.limit)
    items = [_effectiveness_row(r) for r in rows.to_dict(orient="records")]
    return _reply({"effectiveness": items, "total": total, "returned": len(items)}, start)


@router.post(
    "/insights",
    body=InsightsBody,
    summary="Insights and the recommended parameters of a task type",
    description="Insights follow the platform's thresholds (at least 2 parameter sets, at "
    "least 10 % improvement; impact high above 50 %, medium above 25 %).",
    rate_limit=200,
    rate_setting="requests_per_min",
)
async def insights_route(req: ApiRequest) -> Any:
    start = time.perf_counter()
    svc = _service(req)
    body: InsightsBody = req.body
    found, rec = await svc.call(svc.insights, body.task_type, complexity=body.complexity)
    result = {
        "taskType": body.task_type,
        "insights": [_insight(i) for i in found],
        "recommendation": _recommendation(rec),
    }
    return _reply(result, start)


@router.get(
    "/analytics",
    summary="A snapshot of the store",
    description="Records, success rate, the 20 largest task types, models and providers "
    "(with how many distinct there are) and the buffered writer's counters.",
    rate_limit=200,
    rate_setting="requests_per_min",
)
async def analytics(req: ApiRequest) -> Any:
    start = time.perf_counter()
    svc = _service(req)
    return _reply(_camel_tree(await svc.call(svc.snapshot)), start)


@router.get(
    "/dashboard",
    summary="The last 24 hours: totals, top tasks, insights and trends",
    rate_limit=200,
    rate_setting="requests_per_min",
)
async def dashboard(req: ApiRequest) -> Any:
    start = time.perf_counter()
    svc = _service(req)
    return _reply(_dashboard(await svc.call(svc.dashboard)), start)


@router.post(
    "/feedback",
    body=FeedbackBody,
    summary="User feedback on one execution (counted once)",
    description="Sets the record's satisfaction and/or quality; a second feedback replaces "
    "the first and never adds an execution. A record still buffered (async mode) is "
    "written first. 404 when no record has the id.",
    responses={404: "no record has this executionId"},
    rate_limit=200,
    rate_setting="requests_per_min",
)
async def feedback(req: ApiRequest) -> Any:
    start = time.perf_counter()
    svc = _service(req)
    body: FeedbackBody = req.body
    found = await svc.call(
        svc.feedback, body.execution_id, satisfaction=body.satisfaction, quality=body.quality
    )
    if not found:
        raise NotFoundError(
            f"no execution {body.execution_id[:80]!r} is stored; send the record first",
            details=[{"field": "executionId"}],
        )
    result = {
        "executionId": body.execution_id,
        "updated": True,
        "satisfaction": body.satisfaction,
        "quality": body.quality,
    }
    return _reply(result, start)


@router.post(
    "/performance-test",
    body=PerformanceBody,
    summary="Measure ingestion (and aggregation) throughput and latency",
    description="Generates ``operations`` synthetic records of ``taskType`` and ingests them, "
    "100 per transaction, into a scratch in-memory store (complex: aggregating after every "
    "batch), within [analytics] perf_time_limit_s (``truncated`` when it stopped early). "
    "Every figure is measured. One test runs at a time (503 with Retry-After otherwise).",
    rate_limit=10,
    rate_setting="perf_test_per_min",
)
async def performance_test(req: ApiRequest) -> Any:
    start = time.perf_counter()
    svc = _service(req)
    body: PerformanceBody = req.body
    report = await svc.call(svc.performance_test, body.test_type, body.operations, body.task_type)
    return _reply(_camel_tree(report.to_dict()), start)


@router.get(
    "/version",
    summary="Version of the service and its store",
    rate_limit=200,
    rate_setting="requests_per_min",
)
async def version(req: ApiRequest) -> Any:
    start = time.perf_counter()
    svc = _service(req)
    return _reply(_camel_tree(svc.version()), start)


@router.get(
    "/stats",
    summary="The service's counters since it started (its own uptime)",
    rate_limit=200,
    rate_setting="requests_per_min",
)
async def stats(req: ApiRequest) -> Any:
    start = time.perf_counter()
    svc = _service(req)
    return _reply(_camel_tree(svc.stats()), start)


@router.get(
    "/health",
    public=True,
    summary="Health of the store and the writer (503 when the store does not answer)",
    description="Needs no token. ``status`` is degraded while the buffer is over 90 % full "
    "or once records were dead-lettered.",
)
async def health(req: ApiRequest) -> Any:
    start = time.perf_counter()
    svc = _service(req)
    report = await svc.call(svc.health)
    reply = _reply(_camel_tree(report), start, 200 if report["healthy"] else 503)
    reply.data["success"] = bool(report["healthy"])
    return reply
