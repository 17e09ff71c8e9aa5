"""Request bodies: strict parsing, and validation problems in plain words.

Every dialect parses its JSON through `parse`, which accepts no type coercion (a number is
not a string, "true" is not a boolean); the `Invalid` it raises is answered in the
dialect's own 400 shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
)

from services.core.devices import MAX_TOKEN_LENGTH, normalize_cellphone, normalize_email
from services.core.filters import FILTER_LABELS
from services.core.overrides import REFUSE_UNKNOWN
from services.ingest.refusals import Invalid, Problem

T = TypeVar("T")

NOT_JSON = "the body is not valid JSON"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# Bounds match services.core.events (ids 200, tokens 4096 characters).
NonBlank = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_not_blank)]
# A cellphone (country code + number, digits only) and an email (lower-cased), as stored.
Cellphone = Annotated[NonBlank, AfterValidator(normalize_cellphone)]
Email = Annotated[NonBlank, AfterValidator(normalize_email)]
# Free text that must say something (a title, a message), without the id length bound.
NonBlankText = Annotated[str, Field(min_length=1), AfterValidator(_not_blank)]
TokenText = Annotated[
    str, Field(min_length=1, max_length=MAX_TOKEN_LENGTH), AfterValidator(_not_blank)
]


class Body(BaseModel):
    """Base of the dialects' bodies: frozen, strict, unknown fields ignored (as the seeds'
    systems do)."""

    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")


def parse(shape: type[T] | TypeAdapter[T], raw: bytes) -> T:
    """Validate JSON bytes as `shape` (a model class or a TypeAdapter); a provider
    override's unknown key is refused (`services.core.events.Override`).

    Raises Invalid for malformed JSON, a wrong type, a missing or bad field.
    """
    adapter = shape if isinstance(shape, TypeAdapter) else _adapter(shape)
    try:
        return adapter.validate_json(raw or b"null", strict=True, context={REFUSE_UNKNOWN: True})
    except ValidationError as exc:
        raise Invalid([_problem(error) for error in exc.errors()]) from exc


# One per body class, built on first use: building one per request cost 3% of the ingest's
# time.
_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(shape: type[T]) -> TypeAdapter[T]:
    adapter = _ADAPTERS.get(shape)
    if adapter is None:
        adapter = _ADAPTERS[shape] = TypeAdapter(shape)
    return adapter


# Which form a value of a tagged union took is no field: a problem's path leaves it out.
FORM = "form:"


def form(name: str) -> Tag:
    """The tag of one form of a field that takes several (a tagged union)."""
    return Tag(FORM + name)


def _problem(error: Any) -> Problem:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx", {})
    path = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}"
        for part in error["loc"]
        if not str(part).startswith(FORM) and part not in FILTER_LABELS
    ).lstrip(".")
    if kind == "json_invalid":
        return Problem("", NOT_JSON)
    messages = {
        "missing": "is required",
        "string_type": "must be a string",
        "bool_type": "must be true or false",
        "list_type": "must be an array",
        "model_type": "must be an object",
        "model_attributes_type": "must be an object",
        "dict_type": "must be an object",
        "string_too_short": "must not be blank",
        "string_too_long": f"is too long (at most {ctx.get('max_length')} characters)",
        "too_long": f"must have at most {ctx.get('max_length')} items",
        "too_short": f"must have at least {ctx.get('min_length')} item(s)",
        "literal_error": f"must be one of {ctx.get('expected')}",
        "string_pattern_mismatch": "has characters that are not allowed",
        "extra_forbidden": "is not a known field",
    }
    if kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
    else:
        message = messages.get(kind, str(error["msg"]))
    if not path and kind in ("model_type", "model_attributes_type", "dict_type"):
        message = "the body must be a JSON object"
    elif not path and kind == "list_type":
        message = "the body must be a JSON array"
    return Problem(path, message)


def documented(shape: Any) -> dict[str, Any]:
    """`openapi_extra` that shows `shape` as the route's JSON body in /docs.

    The routes read the raw body themselves (to answer in their dialect's 400 shape), so
    FastAPI would otherwise document no body at all.
    """
    schema = TypeAdapter(shape).json_schema(by_alias=True)
    definitions = schema.pop("$defs", {})
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline(schema, definitions)}},
        }
    }


def answered(shape: Any, status: int, description: str) -> dict[int | str, dict[str, Any]]:
    """`responses` that document a route's JSON answer of `shape` in /docs: the routes
    answer with a `JSONResponse` of their own, so FastAPI would show no body."""
    schema = TypeAdapter(shape).json_schema(mode="serialization")
    definitions = schema.pop("$defs", {})
    return {
        status: {
            "description": description,
            "content": {"application/json": {"schema": _inline(schema, definitions)}},
        }
    }


def error_responses(
    shape: type[BaseModel], statuses: Iterable[int], media_type: str = "application/json"
) -> dict[int | str, dict[str, Any]]:
    """`responses` that document a router's error answers, all of `shape`, in /docs.

    Every route may also answer 413 (body over the limit) and 503 (overloaded, or Kafka
    did not take the request), refused before the route runs. A 429 (a rate limit) and a
    503 say in `Retry-After` how many seconds to wait.
    """
    schema = shape.model_json_schema()
    schema = _inline(schema, schema.pop("$defs", {}))
    documented: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 413, 503}):
        answer: dict[str, Any] = {
            "description": HTTPStatus(status).phrase,
            "content": {media_type: {"schema": schema}},
        }
        if status in (429, 503):
            answer["headers"] = {"Retry-After": _RETRY_AFTER}
        documented[status] = answer
    return documented


_RETRY_AFTER = {
    "description": "Seconds to wait before trying again",
    "schema": {"type": "integer", "minimum": 1},
}


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    # OpenAPI resolves references against its own components, not a schema's $defs.
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(value, definitions) for value in node]
    return node
