"""An OpenAPI 3.1 document generated from the declared routes and their pydantic models."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from workbench.api.envelope import API_VERSION
from workbench.api.routing import RouteSpec

__all__ = ["build_openapi", "operation_id"]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*(?:\{[^{}]*\}[^{}]*)*))?\}")

_ENVELOPE = {
    "type": "object",
    "required": ["success", "data", "metadata"],
    "properties": {
        "success": {"const": True},
        "data": {},
        "metadata": {"$ref": "#/components/schemas/Metadata"},
    },
}
_ERROR = {
    "type": "object",
    "required": ["success", "error", "metadata"],
    "properties": {
        "success": {"const": False},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        },
        "metadata": {"$ref": "#/components/schemas/Metadata"},
    },
}
_METADATA = {
    "type": "object",
    "required": ["requestId", "timestamp", "version"],
    "properties": {
        "requestId": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "version": {"type": "string"},
    },
    "additionalProperties": True,
}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _path_schema(pattern: str | None) -> dict[str, Any]:
    if not pattern:
        return {"type": "string"}
    if not (pattern.startswith("^") and pattern.endswith("$")):
        pattern = f"^(?:{pattern})$"
    return {"type": "string", "pattern": pattern}


def operation_id(spec: RouteSpec) -> str:
    """The OpenAPI ``operationId`` of a route: its method and path as one identifier
    (``get_api_v1_vision_reservations_reservation_id``), for links to name it."""
    path = _PARAM.sub(r"{\1}", spec.path)
    return f"{spec.method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}"


def build_openapi(specs: Sequence[RouteSpec], *, version: str | None = None) -> dict[str, Any]:
    """The OpenAPI document of ``specs``."""
    from workbench import __version__

    models: list[type[BaseModel]] = []
    for spec in specs:
        for model in (spec.body, spec.query):
            if model is not None and model not in models:
                models.append(model)
    refs: dict[Any, Any] = {}
    schemas: dict[str, Any] = {"Envelope": _ENVELOPE, "Error": _ERROR, "Metadata": _METADATA}
    if models:
        mapping, top = models_json_schema(
            [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
        )
        refs = {m: mapping[(m, "validation")] for m in models}
        schemas.update(top.get("$defs", {}))

    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        path = _PARAM.sub(r"{\1}", spec.path)
        op: dict[str, Any] = {
            "summary": spec.summary,
            "operationId": operation_id(spec),
            "tags": [spec.tag],
        }
        if spec.description:
            op["description"] = spec.description
        params: list[dict[str, Any]] = [
            {
                "name": m.group(1),
                "in": "path",
                "required": True,
                # A path parameter declared {name:regex} is routed only when it matches.
                "schema": _path_schema(m.group(2) or spec.path_params.get(m.group(1))),
            }
            for m in _PARAM.finditer(spec.path)
        ]
        if spec.query is not None:
            for name, field in spec.query.model_fields.items():
                params.append(
                    {
                        "name": field.alias or name,
                        "in": "query",
                        "required": field.is_required(),
                        "schema": {"type": "string"},
                        **({"description": field.description} if field.description else {}),
                    }
                )
        if params:
            op["parameters"] = params
        if spec.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[spec.body]}},
            }
        ok_schema: dict[str, Any] = {}
        if spec.media_type == "application/json" and spec.envelope:
            ok_schema = {"$ref": "#/components/schemas/Envelope"}
        elif spec.media_type != "application/json":
            ok_schema = {"type": "string"}
        responses: dict[str, Any] = {
            str(spec.status): {
                "description": "success",
                "content": {spec.media_type: {"schema": ok_schema}},
            },
            "400": _error_response("invalid input; error.details names each field"),
            "413": _error_response("request body too large"),
        }
        if spec.body is not None:
            responses["415"] = _error_response("the body is not sent as application/json")
        if params:
            responses["404"] = _error_response("nothing exists at this path")
        if not spec.public:
            responses["401"] = _error_response("missing or invalid bearer token")
        responses["403"] = _error_response(
            "admin token required, or (without an API token) a Host outside [api] allowed_hosts"
            if spec.admin
            else "without an API token: a Host outside [api] allowed_hosts"
        )
        if spec.service is not None:
            responses["503"] = _error_response(
                "this subsystem's backend is unavailable"
                if spec.service.per_worker
                else "the worker that owns this subsystem is not answering (shutting down)"
            )
        if spec.links:
            responses[str(spec.status)]["links"] = spec.links
        for status, text in spec.responses.items():
            responses[str(status)] = _error_response(text)
        op["responses"] = responses
        if spec.public:
            op["security"] = []
        paths.setdefault(path, {})[spec.method.lower()] = op

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "workbench",
            "version": version or __version__,
            "description": (
                "Compute services of the AI orchestration platform. Enveloped responses follow "
                f"the platform's API version {API_VERSION}."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }
