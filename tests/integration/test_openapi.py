"""base's and main's OpenAPI tell the truth: schemathesis tries them against the real services.

Each operation gets schemathesis' coverage cases (boundaries, missing and wrong-typed values,
unsupported content types) and a bounded number of property-based examples, valid and invalid.
A run fails on any 5xx but a deliberate 503 (one naming its dependency, as the schema says), on
an invalid request that is accepted, and on any status, content type, header or body the
operation's schema does not describe.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis import Case

from kubescaler.settings import Settings
from kubescaler_dev.services import Service

pytestmark = pytest.mark.integration

#: Examples per operation in the fuzzing phase (the coverage phase adds its own, deterministic).
EXAMPLES = 25
#: POST /main/testdata sizes above this are scaled down, so one case writes a few rows, not 10^5.
SMALL = 8
JSON = {"content-type": "application/json"}

CONFIG = schemathesis.Config.from_dict(
    {
        "request-timeout": 30,
        "phases": {"stateful": {"enabled": False}},
        "generation": {"mode": "all"},
        # a 503 is a deliberate answer only with its documented body, which the schema check reads
        "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}},
    }
)
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
    schemathesis.checks.unsupported_method,
]
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)


def _spec(service: str) -> dict[str, Any]:
    """The service's OpenAPI, built in-process (nothing connects); the fixtures below compare it
    with the one the running service serves."""
    with warnings.catch_warnings():  # Litestar 3 deprecations, which the services report anyway
        warnings.simplefilter("ignore", DeprecationWarning)
        app = importlib.import_module(f"kubescaler.entrypoints.{service}_app")
        return app.create_app(Settings()).openapi_schema.to_schema()  # type: ignore[no-any-return]


BASE_SPEC, MAIN_SPEC = _spec("base"), _spec("main")
TESTDATA_MAXIMUM = {
    p["name"]: p["schema"]["maximum"] for p in MAIN_SPEC["paths"]["/testdata"]["post"]["parameters"]
}
base_api = schemathesis.openapi.from_dict(BASE_SPEC, config=CONFIG)
main_api = schemathesis.openapi.from_dict(MAIN_SPEC, config=CONFIG)


@pytest.fixture(scope="module")
def base_url(base_service: Service) -> Iterator[str]:
    assert httpx.get(f"{base_service.url}/schema/openapi.json").json() == BASE_SPEC
    yield base_service.url
    httpx.delete(f"{base_service.url}/data", timeout=30)


@pytest.fixture(scope="module")
def main_url(main_service: Service) -> Iterator[str]:
    assert httpx.get(f"{main_service.url}/schema/openapi.json").json() == MAIN_SPEC
    yield main_service.url
    httpx.delete(f"{main_service.url}/testdata", timeout=30)


@base_api.parametrize()
@SETTINGS
def test_base_answers_as_its_openapi_says(case: Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=CHECKS)


@main_api.parametrize()
@SETTINGS
def test_main_answers_as_its_openapi_says(case: Case, main_url: str) -> None:
    if case.method == "POST" and case.path == "/testdata" and isinstance(case.query, dict):
        _small_testdata(case.query)
    case.call_and_validate(base_url=main_url, checks=CHECKS)


def _small_testdata(query: dict[str, Any]) -> None:
    """Scale down valid sizes only: an out-of-range value stays out of range, still refused."""
    for name, value in query.items():
        number = value if isinstance(value, int) else None
        if isinstance(value, str) and value.isascii() and value.isdigit():
            number = int(value)
        most = TESTDATA_MAXIMUM.get(name, 0)
        if number is not None and not isinstance(number, bool) and SMALL < number <= most:
            small = SMALL // 2 + number % (SMALL // 2)
            query[name] = small if isinstance(value, int) else str(small)


def test_every_error_response_is_documented_with_the_body_sent(
    base_url: str, main_url: str
) -> None:
    """Statuses random inputs rarely reach (409, 413, 415, ...) match their documented bodies."""
    base = httpx.Client(base_url=base_url, timeout=30)
    main = httpx.Client(base_url=main_url, timeout=30)
    user = base.post("/users", json={"name": "x"}).json()["id"]
    missing = "00000000-0000-4000-8000-000000000000"
    tries = [
        (base_api, base, "POST", "/users", {"json": {"id": user, "name": "y"}}, 409),
        (base_api, base, "POST", "/users", {"content": b"x" * 2_000_000, "headers": JSON}, 413),
        (base_api, base, "POST", "/users", {"content": b"{}"}, 415),
        (base_api, base, "PUT", "/users/{user_id}", {"json": {"name": "y"}}, 404),
        (base_api, base, "POST", "/profiles", {"json": {"users": [missing]}}, 400),
        (base_api, base, "GET", "/users/{user_id}/profiles/{profile_id}", {}, 404),
        (base_api, base, "GET", "/users", {"params": {"limit": "1e3"}}, 400),
        (main_api, main, "GET", "/login/{user_id}", {}, 404),
        (main_api, main, "POST", "/testdata", {"params": {"users": "1e3"}}, 400),
    ]
    for schema, client, method, template, kwargs, status in tries:
        path = template.replace("{user_id}", missing).replace("{profile_id}", missing)
        r = client.request(method, path, **kwargs)
        assert r.status_code == status, (method, path, r.text[:300])
        documented = schema.raw_schema["paths"][template][method.lower()]["responses"]
        assert str(status) in documented, (method, template, status)
        schema[template][method].validate_response(r)
