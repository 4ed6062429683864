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


@pytest.fixture
def redis_login(
    monkeypatch: pytest.MonkeyPatch, redis_passwords: dict[str, str]
) -> Callable[[str], None]:
    """``redis_login(user)``: this test's environment logs in to Redis as ``user`` (what an
    in-process `kubescaler replay` reads)."""

    def login(user: str) -> None:
        monkeypatch.setenv("KUBESCALER_REDIS_USERNAME", user)
        monkeypatch.setenv("KUBESCALER_REDIS_PASSWORD", redis_passwords[user])

    return login


@pytest.fixture(scope="module")
def pairs(main_service: Service, shared_user_pairs: MakePairs) -> list[Pair]:
    """Fresh test data; each test takes its own pairs so locks never leak between tests."""
    with httpx.Client(base_url=main_service.url, timeout=60) as main:
        return [Pair(*t) for t in shared_user_pairs(main, 60, 30, 20)]


@pytest.fixture
def pair(pairs: list[Pair]) -> Pair:
    return pairs.pop()
