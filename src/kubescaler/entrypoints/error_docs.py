"""The error bodies the services send, as OpenAPI documents them.

Every error answer is ``{"status": ..., "error": "what is wrong", ...}`` (see
:func:`kubescaler.entrypoints.web.error_body`); a route lists the statuses it can really answer
with :func:`errors`, which replaces Litestar's default ``{status_code, detail}`` description.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar.openapi.datastructures import ResponseSpec


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class ErrorBody(msgspec.Struct, kw_only=True):
    """An error answer. Fields past ``status`` and ``error`` appear where they apply."""

    status: Annotated[int, _doc("the HTTP status, repeated")]
    error: Annotated[str, _doc("what is wrong, naming the parameter, field or id")]
    path: Annotated[str | msgspec.UnsetType, _doc("the request path (malformed requests)")] = (
        msgspec.UNSET
    )
    kind: Annotated[str | msgspec.UnsetType, _doc("what was not found: user or profile")] = (
        msgspec.UNSET
    )
    id: Annotated[str | msgspec.UnsetType, _doc("the id not found, or that already exists")] = (
        msgspec.UNSET
    )
    unknown_users: Annotated[
        list[str] | msgspec.UnsetType, _doc("user ids a profile names that do not exist")
    ] = msgspec.UNSET


class DependencyErrorBody(msgspec.Struct, kw_only=True):
    """A 503: a dependency did not answer. Never hidden as an empty list."""

    status: Annotated[int, _doc("503")]
    error: Annotated[str, _doc("which dependency failed, and how")]
    dependency: Annotated[str, _doc("cassandra, redis, base or lock-keeper")]
    cause: Annotated[
        str | msgspec.UnsetType, _doc("main: the dependency base itself reported as failing")
    ] = msgspec.UNSET


_WHY = {
    400: "Malformed request: an id, a query parameter or the body; `error` says which.",
    401: (
        "No token, or one that does not verify (auth mode: expired, another audience or "
        "issuer, a bad signature); or the admin token missing or wrong, where one is set."
    ),
    403: "The token does not allow this: another user's, or without the admin role.",
    404: "The id names no user or profile.",
    409: "The id already exists; nothing was written.",
    413: "The body is larger than KUBESCALER_MAX_BODY_BYTES.",
    415: "The body is not JSON: send `Content-Type: application/json`.",
    503: "A dependency did not answer; `dependency` names it.",
}


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses for the error statuses a route really answers with."""
    return {
        status: ResponseSpec(
            data_container=DependencyErrorBody if status == 503 else ErrorBody,
            description=_WHY[status],
            generate_examples=False,
        )
        for status in statuses
    }
