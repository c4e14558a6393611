"""The one pydantic base model of the platform's wire shapes.

Request and response schemas of every API module derive from :class:`WireModel`: fields are
snake_case in Python and camelCase on the wire (``max_iterations`` <-> ``maxIterations``),
either spelling is accepted, unknown members are ignored as the platform's services did, and
``NaN`` and infinities are refused for every float (bodies are also validated in strict mode:
see :func:`workbench.api.routing.parse_body`).
A schema that must refuse unknown members (typos in a reservation would change its meaning)
sets ``model_config = ConfigDict(extra="forbid")``, which pydantic merges with this base.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["WireModel"]


class WireModel(BaseModel):
    """Base of every request and response schema (camelCase on the wire)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", allow_inf_nan=False
    )
