"""Parameters the HTTP services share: ids, and the paging of lists.

Path ids are documented as the UUIDs they must be but stay strings to the route, which parses
them with ``parse_uuid`` so that a malformed id is a 400 naming it ("user id is not a valid
UUID"), not a failed route match.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

_UUID = {"format": "uuid"}

UserId = Annotated[str, Parameter(description="a user's UUID", schema_extra=_UUID)]
ProfileId = Annotated[str, Parameter(description="a profile's UUID", schema_extra=_UUID)]

Limit = Annotated[int, Parameter(ge=1, le=5000, description="rows per page")]
PageToken = Annotated[
    str | None,
    Parameter(query="page", description="the next page's token (base: `next`; main: X-Next-Page)"),
]
