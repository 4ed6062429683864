"""Path parameters the HTTP services share, documented as the UUIDs they must be.

They stay strings to the route, which parses them with ``parse_uuid`` so that a malformed id is
a 400 naming it ("user id is not a valid UUID"), not a failed route match.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

_UUID = {"format": "uuid"}

UserId = Annotated[str, Parameter(description="a user's UUID", schema_extra=_UUID)]
ProfileId = Annotated[str, Parameter(description="a profile's UUID", schema_extra=_UUID)]
