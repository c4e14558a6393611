"""The OpenAPI 3.1 document of the router's platform and admin routes (``/openapi.json``).

Kept apart from :mod:`workbench.router.platform` (the handlers) because it is long and only
read once, when the routes are mounted. Its limits and enums are the handlers' own
constants, so the document cannot drift from what the handlers accept.
"""

from __future__ import annotations

from typing import Any

from workbench.router.platform import (
    _JSON,
    _MISSING,
    ADMIN_RELOAD,
    COORDINATOR,
    MAX_BENCHMARK_CHARS,
    MAX_BENCHMARK_REQUESTS,
    MAX_BODY_BYTES,
    MAX_REQUEST_CHARS,
    MAX_SUPPORTING_TASKS,
    PREFIX,
    RESERVOIR_SIZE,
    RESPONSE_LENGTHS,
    TARGETS,
)
from workbench.router.rules import COMPLEXITIES, URGENCIES

__all__ = ["openapi_document"]


# -- the OpenAPI document ------------------------------------------------------------------


def _string(max_chars: int, **kw: Any) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_chars, **kw}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["success", "data", "metadata"],
        "properties": {"success": {"const": True}, "data": data, "metadata": _ref("Metadata")},
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


_ERRORS = {
    400: "A field does not validate (``error.field`` names it)",
    401: "Missing or wrong bearer token",
    403: "Refused: no token is set and the client or Host is not loopback, or the admin "
    "route is disabled",
    404: "No such request id",
    409: "The configuration file did not load; the one in force is kept",
    413: f"Body larger than {MAX_BODY_BYTES} bytes",
    415: "Body not declared application/json",
    429: "Every backend is rate-limited (Retry-After)",
    501: "Not implemented here (the message says what is missing)",
    502: "The backends failed",
    503: "No backend is available",
    504: "The deadline passed",
    "4XX": "A backend refused the request it was sent (its message is passed on)",
}


def _operation(
    operation_id: str,
    summary: str,
    description: str,
    ok: dict[str, Any] | None,
    errors: tuple[Any, ...],
    *,
    body: str | None = None,
    extra: dict[Any, dict[str, Any]] | None = None,
    links: dict[str, Any] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if ok is not None:
        responses["200"] = _json(_envelope(ok), "Done")
        if links:
            responses["200"]["links"] = links
    for status, resp in (extra or {}).items():
        responses[str(status)] = resp
    for status in errors:
        responses[str(status)] = _json(_ref("Error"), _ERRORS[status])
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "security": [{"bearerAuth": []}],
        "responses": responses,
    }
    if body is not None:
        media: dict[str, Any] = {"schema": _ref(body)}
        if body in _EXAMPLES:
            media["examples"] = {name: {"value": value} for name, value in _EXAMPLES[body].items()}
        op["requestBody"] = {"required": True, "content": {_JSON: media}}
    return op


_CODE_EXAMPLE = "implement a function that parses a CSV file and debug the edge cases"
_EXAMPLES: dict[str, dict[str, Any]] = {
    "RoutingRequest": {
        "simple": {"userRequest": "what time zone is Lisbon in?"},
        "code": {"userRequest": _CODE_EXAMPLE, "context": {"urgency": "high"}},
    },
    "ExecuteRequest": {
        "simple": {"userRequest": "say hello", "maxTokens": 32},
        "code": {"userRequest": _CODE_EXAMPLE, "temperature": 0.2},
    },
    "CoordinateRequest": {
        "tasks": {"primaryTask": "plan a release", "supportingTasks": [_CODE_EXAMPLE, "hi"]},
    },
    "BenchmarkRequest": {
        "mixed": {"testRequests": ["hi", {"userRequest": _CODE_EXAMPLE}]},
    },
    "FeedbackRequest": {"rating": {"requestId": "3f2a9c", "rating": 4}},
}


def _schemas() -> dict[str, Any]:
    number_or_null = {"type": ["number", "null"]}
    context = {
        "type": "object",
        "description": "The platform's CoordinationContext; taskType and complexity are "
        "informational (complexity is estimated from the text).",
        "properties": {
            "taskType": _string(64),
            "complexity": {"enum": list(COMPLEXITIES)},
            "urgency": {"enum": list(URGENCIES)},
            "expectedResponseLength": {"enum": list(RESPONSE_LENGTHS)},
            "requiresCreativity": {"type": "boolean"},
            "requiresAccuracy": {"type": "boolean"},
        },
    }
    decision = {
        "type": "object",
        "required": [
            "shouldUseLocal",
            "targetService",
            "reasoning",
            "complexity",
            "estimatedTokens",
            "priority",
            "confidence",
            "rule",
            "model",
            "modelSource",
            "backend",
        ],
        "properties": {
            "shouldUseLocal": {"type": "boolean"},
            "targetService": {"enum": list(TARGETS)},
            "reasoning": {"type": "string"},
            "complexity": {"enum": list(COMPLEXITIES)},
            "estimatedTokens": {"type": "integer", "minimum": 0},
            "priority": {"type": "integer", "minimum": 1, "maximum": 5},
            "confidence": {"type": "number"},
            "rule": {"type": "string"},
            "model": {"type": "string"},
            "modelSource": {"type": "string"},
            "backend": {"type": ["string", "null"]},
        },
    }
    run_meta = {
        "type": "object",
        "required": ["routingDecision", "executionTime", "tokensUsed", "serviceUsed", "requestId"],
        "properties": {
            "routingDecision": _ref("Decision"),
            "routingTime": {"type": "string"},
            "routingTimeMs": {"type": "number"},
            "executionTime": {"type": "string", "pattern": "^[0-9.]+ms$"},
            "executionTimeMs": {"type": "number"},
            "tokensUsed": {"type": "integer"},
            "serviceUsed": {"type": ["string", "null"]},
            "model": {"type": "string"},
            "requestId": {"type": "string"},
            "timestamp": {"type": "string"},
            "coordinator": {"type": "string"},
        },
    }
    task_result = {
        "type": "object",
        "required": ["success", "metadata"],
        "properties": {
            "success": {"type": "boolean"},
            "response": {"type": ["string", "null"]},
            "error": {"type": "object"},
            "metadata": _ref("RunMetadata"),
        },
    }
    return {
        "Metadata": {
            "type": "object",
            "required": ["timestamp"],
            "properties": {"timestamp": {"type": "string"}},
        },
        "Error": {
            "type": "object",
            "required": ["success", "error", "metadata"],
            "properties": {
                "success": {"const": False},
                "error": {
                    "type": "object",
                    "required": ["code", "message", "field"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": ["string", "null"]},
                        "details": {},
                    },
                },
                "metadata": _ref("Metadata"),
            },
        },
        "Context": context,
        "Decision": decision,
        "RunMetadata": run_meta,
        "TaskResult": task_result,
        "RoutingRequest": {
            "type": "object",
            "required": ["userRequest"],
            "properties": {"userRequest": _string(MAX_REQUEST_CHARS), "context": _ref("Context")},
        },
        "ExecuteRequest": {
            "type": "object",
            "required": ["userRequest"],
            "properties": {
                "userRequest": _string(MAX_REQUEST_CHARS),
                "context": _ref("Context"),
                "maxTokens": {"type": "integer", "minimum": 1, "maximum": 32_768},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            },
        },
        "CoordinateRequest": {
            "type": "object",
            "required": ["primaryTask"],
            "properties": {
                "primaryTask": _string(MAX_REQUEST_CHARS),
                "supportingTasks": {
                    "type": "array",
                    "maxItems": MAX_SUPPORTING_TASKS,
                    "items": _string(MAX_REQUEST_CHARS),
                },
            },
        },
        "BenchmarkRequest": {
            "type": "object",
            "required": ["testRequests"],
            "properties": {
                "testRequests": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BENCHMARK_REQUESTS,
                    "items": {
                        "anyOf": [
                            _string(MAX_BENCHMARK_CHARS),
                            {
                                "type": "object",
                                "required": ["userRequest"],
                                "properties": {
                                    "userRequest": _string(MAX_BENCHMARK_CHARS),
                                    "context": _ref("Context"),
                                },
                            },
                        ]
                    },
                }
            },
        },
        "FeedbackRequest": {
            "type": "object",
            "required": ["requestId"],
            "anyOf": [
                {"required": ["success"]},
                {"required": ["quality"]},
                {"required": ["rating"]},
            ],
            "properties": {
                "requestId": _string(128),
                "success": {"type": "boolean"},
                "quality": {"type": "number", "minimum": 0, "maximum": 1},
                "rating": {"type": "number", "minimum": 1, "maximum": 5},
            },
        },
        "Quantiles": {
            "type": "object",
            "required": ["decisions", "samples", "medianMs", "p95Ms"],
            "properties": {
                "decisions": {"type": "integer"},
                "samples": {"type": "integer"},
                "medianMs": number_or_null,
                "p95Ms": number_or_null,
            },
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the platform and admin routes (served at
    ``/openapi.json``). The ``/v1/*`` proxy routes follow OpenAI's own API reference and
    forward bodies as they come, so they are not described here."""
    common = (400, 401, 403, 413, 415)
    upstream = (*common, 429, 502, 503, 504, "4XX")
    decision_data = {
        "type": "object",
        "required": ["decision", "metadata"],
        "properties": {
            "decision": _ref("Decision"),
            "metadata": {
                "type": "object",
                "required": ["executionTime", "executionTimeMs", "timestamp", "coordinator"],
                "properties": {
                    "executionTime": {"type": "string", "pattern": "^[0-9.]+ms$"},
                    "executionTimeMs": {"type": "number", "minimum": 0},
                    "timestamp": {"type": "string"},
                    "coordinator": {"const": COORDINATOR},
                },
            },
        },
    }
    execute_data = {
        "type": "object",
        "required": ["response", "metadata"],
        "properties": {"response": {"type": ["string", "null"]}, "metadata": _ref("RunMetadata")},
    }
    coordinate_data = {
        "type": "object",
        "required": ["primary", "supporting", "coordination", "metadata"],
        "properties": {
            "primary": _ref("TaskResult"),
            "supporting": {"type": "array", "items": _ref("TaskResult")},
            "coordination": {
                "type": "object",
                "required": ["totalExecutionTime", "fastDecisions", "servicesUsed"],
                "properties": {
                    "totalExecutionTime": {"type": "string"},
                    "totalExecutionTimeMs": {"type": "number"},
                    "fastDecisions": {"type": "integer"},
                    "servicesUsed": {"type": "array", "items": {"type": "string"}},
                    "succeeded": {"type": "integer"},
                },
            },
            "metadata": {"type": "object"},
        },
    }
    status_data = {
        "type": "object",
        "required": ["coordinator", "backends", "targets", "lfm2", "optimization", "metadata"],
        "properties": {
            "coordinator": {
                "type": "object",
                "required": ["status", "routingTime", "requestsServed", "uptimeSeconds"],
                "properties": {
                    "status": {"enum": ["ok", "degraded", "down"]},
                    "routingTime": _ref("Quantiles"),
                    "requestsServed": {"type": "object"},
                    "uptimeSeconds": {"type": "number", "minimum": 0},
                },
            },
            "backends": {"type": "object"},
            "targets": {"type": "object"},
            "lfm2": {"type": "object"},
            "optimization": {"type": "object"},
            "metadata": {"type": "object"},
        },
    }
    benchmark_data = {
        "type": "object",
        "required": ["benchmark", "metadata"],
        "properties": {
            "benchmark": {
                "type": "object",
                "required": ["results", "summary"],
                "properties": {
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["index", "decision", "routingTimeMs"],
                            "properties": {
                                "index": {"type": "integer"},
                                "decision": _ref("Decision"),
                                "routingTimeMs": {"type": "number", "minimum": 0},
                            },
                        },
                    },
                    "summary": {"type": "object"},
                },
            },
            "metadata": {"type": "object"},
        },
    }
    feedback_data = {
        "type": "object",
        "required": ["requestId", "counted"],
        "properties": {"requestId": {"type": "string"}, "counted": {"type": "boolean"}},
    }
    reload_data = {
        "type": "object",
        "required": ["reloaded", "configPath"],
        "properties": {"reloaded": {"type": "string"}, "configPath": {"type": "string"}},
    }
    stub = (401, 403, 501)
    paths = {
        f"{PREFIX}/routing-decision": {
            "post": _operation(
                "routingDecision",
                "Which backend a request needs (the rule table on the user's text)",
                "Scores the rule table on userRequest (never a prompt built around it), maps "
                "the target to a model by capability tags and names the backend the router "
                "would pick now. executionTime is measured.",
                decision_data,
                common,
                body="RoutingRequest",
            )
        },
        f"{PREFIX}/execute": {
            "post": _operation(
                "execute",
                "Decide, then forward a chat completion through the proxy",
                "The decision of routing-decision, then one chat completion for the mapped "
                "model through the proxy's retries, fallbacks and breakers. requestId is the "
                "id POST feedback takes.",
                execute_data,
                upstream,
                body="ExecuteRequest",
                links={
                    "Feedback": {
                        "operationId": "feedback",
                        "description": "Feedback on the request execute answered",
                        "requestBody": {"requestId": "$response.body#/data/metadata/requestId"},
                    }
                },
            )
        },
        f"{PREFIX}/coordinate-agents": {
            "post": _operation(
                "coordinateAgents",
                "Execute a primary task and supporting tasks at once",
                f"At most {MAX_SUPPORTING_TASKS} supporting tasks. The answer is the primary "
                "task's status; each supporting task carries its own success.",
                coordinate_data,
                upstream,
                body="CoordinateRequest",
            )
        },
        f"{PREFIX}/status": {
            "get": _operation(
                "status",
                "Measured routing time, backend availability, requests served, uptime",
                "Figures of this process: routing-time quantiles from a uniform reservoir of "
                f"{RESERVOIR_SIZE} decisions, each backend's state from the router.",
                status_data,
                (401, 403),
            )
        },
        f"{PREFIX}/benchmark": {
            "post": _operation(
                "benchmark",
                "Time the routing decision of each request (no backend is called)",
                f"1 to {MAX_BENCHMARK_REQUESTS} requests of at most {MAX_BENCHMARK_CHARS} "
                "characters, as strings or {userRequest, context}.",
                benchmark_data,
                common,
                body="BenchmarkRequest",
            )
        },
        f"{PREFIX}/feedback": {
            "post": _operation(
                "feedback",
                "Feedback on a request execute answered (counted once per id)",
                "quality in [0, 1] wins over rating in [1, 5], which wins over success. A "
                "second post of the same id answers counted: false; an unknown id 404.",
                feedback_data,
                (*common, 404),
                body="FeedbackRequest",
            )
        },
        f"{PREFIX}/lfm2/quick": {
            "post": _operation(
                "lfm2Quick",
                "Not implemented here: no LFM2 runtime",
                _MISSING["lfm2/quick"],
                None,
                stub,
            )
        },
        f"{PREFIX}/optimize": {
            "post": _operation(
                "optimize", "Not implemented here: no optimiser", _MISSING["optimize"], None, stub
            )
        },
        f"{PREFIX}/auto-tune": {
            "post": _operation(
                "autoTune", "Not implemented here", _MISSING["auto-tune"], None, stub
            )
        },
        ADMIN_RELOAD: {
            "post": _operation(
                "adminReload",
                "Reload the configuration file the router was started with (as SIGHUP)",
                "Admin token. Requests in flight finish on the old backends. A file that does "
                "not load answers 409 and the configuration in force is kept. Under --workers "
                "K > 1 every worker reloads (202).",
                reload_data,
                (401, 403, 409),
                extra={202: _json(_envelope(reload_data), "Every worker was signalled")},
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "workbench router: platform routes",
            "version": "1.0.0",
            "description": "The platform's fast-coordinator routes and the admin reload of "
            "`workbench router serve`.",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
