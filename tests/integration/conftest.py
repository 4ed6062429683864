"""Fixtures of the stream tests (test_stream, test_stream_outages, test_podcost): fresh pairs.

test_auth makes its own pairs, through the auth-on main, under the same names.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from streamclient import Pair

from kubescaler_dev.services import Service

MakePairs = Callable[..., list[tuple[str, str, str]]]  # the shared_user_pairs fixture


@pytest.fixture(scope="module")
def pairs(main_service: Service, shared_user_pairs: MakePairs) -> list[Pair]:
    """Fresh test data; each test takes its own pairs so locks never leak between tests."""
    with httpx.Client(base_url=main_service.url, timeout=60) as main:
        return [Pair(*t) for t in shared_user_pairs(main, 60, 30, 20)]


@pytest.fixture
def pair(pairs: list[Pair]) -> Pair:
    return pairs.pop()
