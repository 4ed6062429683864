"""How base names a refused Cassandra login, and what `cassandra-roles` needs (issue 24)."""

from __future__ import annotations

import pytest
from cassandra import AuthenticationFailed
from cassandra.cluster import NoHostAvailable

from kubescaler.adapters.cassandra_roles import RoleMaker, RolesError
from kubescaler.adapters.cassandra_session import refusal_line
from kubescaler.settings_cassandra import CassandraSettings

S = CassandraSettings(hosts=["cassandra"], username="base", password="s3cret-value")


def _refused(message: str) -> NoHostAvailable:
    return NoHostAvailable("Unable to connect", {"10.0.0.7:9042": AuthenticationFailed(message)})


def test_bad_credentials_name_the_store_the_role_and_the_setting() -> None:
    line = refusal_line(
        S, _refused('message="Provided username base and/or password are incorrect"')
    )
    assert line == (
        "Cassandra at cassandra:9042 refused role 'base': bad credentials; "
        "check KUBESCALER_CASSANDRA_PASSWORD"
    )
    assert "s3cret-value" not in line


def test_no_login_set_names_both_settings() -> None:
    line = refusal_line(CassandraSettings(), _refused("Remote end requires authentication"))
    assert line == (
        "Cassandra at 127.0.0.1:9042 requires a login and none is set; "
        "set KUBESCALER_CASSANDRA_USERNAME and KUBESCALER_CASSANDRA_PASSWORD"
    )


def test_a_role_that_may_not_log_in_names_the_username() -> None:
    line = refusal_line(S, _refused("base is not permitted to log in"))
    assert line is not None
    assert "KUBESCALER_CASSANDRA_USERNAME" in line


def test_auth_data_unavailable_is_not_a_credentials_problem() -> None:
    """Too few replicas of system_auth up: retried like any outage, never fatal."""
    unavailable = _refused("Unable to perform authentication: Cannot achieve consistency level")
    assert refusal_line(S, unavailable) is None
    assert refusal_line(S, NoHostAvailable("down", {"x": ConnectionRefusedError()})) is None
    assert refusal_line(S, OSError("no route")) is None


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"admin_username": ""}, "KUBESCALER_CASSANDRA_ADMIN_USERNAME"),
        ({"admin_password": ""}, "KUBESCALER_CASSANDRA_ADMIN_PASSWORD"),
        ({"password": ""}, "KUBESCALER_CASSANDRA_PASSWORD"),
        ({"username": "Base; DROP"}, "KUBESCALER_CASSANDRA_USERNAME"),
        ({"admin_username": "base"}, "KUBESCALER_CASSANDRA_ADMIN_USERNAME"),
        ({"admin_username": "cassandra"}, "KUBESCALER_CASSANDRA_ADMIN_USERNAME"),
    ],
)
def test_roles_need_every_setting_and_plain_role_names(changes: dict[str, str], named: str) -> None:
    import msgspec

    good = msgspec.structs.replace(S, admin_username="kubescaler_admin", admin_password="a")
    RoleMaker(good)  # the good one passes
    with pytest.raises(RolesError, match=named):
        RoleMaker(msgspec.structs.replace(good, **changes))
