"""Checks every service makes on a request before its route reads it.

- A route that reads a JSON body answers 415 unless the body is declared ``application/json``
  (with, at most, ``charset=utf-8``). ``+json`` types such as ``application/merge-patch+json``
  carry meanings these routes do not implement, so they are refused rather than read as JSON.
- An integer query parameter must be written as an integer: Litestar converts leniently, so
  ``?users=1e3`` or ``?limit=10.0`` would otherwise pass as 1000 and 10.
- A JSON body nested deeper than the decoder can follow is a 400, not a RecursionError.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request
from litestar.exceptions import ClientException, ValidationException
from litestar.params import ParameterKwarg
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE
from litestar.typing import FieldDefinition

from kubescaler.domain.errors import InvalidInput

JSON = "application/json"
_UTF8 = {"utf-8", "utf8"}
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")  # as JSON writes integers


class JsonRequest(Request[Any, Any, Any]):
    """A request whose JSON body, however deeply nested, is read or refused with a 400."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError:
            raise InvalidInput(
                "invalid request: the JSON body is nested too deeply to read"
            ) from None


async def check_request(request: Request[Any, Any, Any]) -> None:
    """A Litestar ``before_request`` hook: 415 for a non-JSON body, 400 for a non-integer."""
    params = request.route_handler.parsed_fn_signature.parameters
    if "data" in params and _has_body(request):
        _require_json(request)
    bad = [
        {
            "key": name,
            "source": "query",
            "message": f"expected an integer such as 42, got {value!r}",
        }
        for name in _integer_query_names(params.values())
        for value in request.query_params.getall(name, [])
        if not _INTEGER.fullmatch(value)
    ]
    if bad:
        raise ValidationException(detail="invalid query parameters", extra=bad)


def _has_body(request: Request[Any, Any, Any]) -> bool:
    """Whether the request carries a body, by its headers (HTTP/1.1 framing)."""
    if "transfer-encoding" in request.headers or "content-type" in request.headers:
        return True
    return request.headers.get("content-length", "0").strip() not in ("", "0")


def _require_json(request: Request[Any, Any, Any]) -> None:
    media_type, options = request.content_type
    charset = options.get("charset", "utf-8").lower()
    if media_type == JSON and charset in _UTF8:
        return
    sent = (request.headers.get("content-type") or "none")[:100]
    why = "JSON bodies are UTF-8" if media_type == JSON else "this endpoint reads a JSON body"
    raise ClientException(
        f"unsupported Content-Type ({sent}): {why}; send Content-Type: {JSON}",
        status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    )


def _integer_query_names(fields: Any) -> list[str]:
    """The query names of a route's parameters typed ``int`` (or ``int | None``)."""
    names = []
    for field in fields:
        if _is_int(field):
            kwarg = field.kwarg_definition
            alias = kwarg.query if isinstance(kwarg, ParameterKwarg) else None
            names.append(alias or field.name)
    return names


def _is_int(field: FieldDefinition) -> bool:
    if field.annotation is int:
        return True
    return field.is_optional and any(t.annotation is int for t in field.inner_types)
