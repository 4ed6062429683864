"""A starting server of the local state Redis follows the primary the Sentinels name, and
never comes back as a primary while they are failing it over."""

from __future__ import annotations

from kubescaler_dev.redis_follow import LEAD, WAIT, decide


def state(port: int, flags: str = "master", epoch: int = 0) -> dict[str, str]:
    return {"port": str(port), "flags": flags, "config-epoch": str(epoch)}


def test_the_first_start_leads_or_follows_as_configured() -> None:
    assert decide(6379, [], None) == LEAD
    assert decide(6380, [], 6379) == 6379


def test_a_server_follows_the_primary_the_sentinels_name() -> None:
    assert decide(6380, [state(6379)], 6379) == 6379
    assert decide(6379, [state(6381, epoch=1)], None) == 6381  # it was failed over


def test_a_primary_restarted_before_the_sentinels_doubt_it_leads_again() -> None:
    assert decide(6379, [state(6379, "master,disconnected")], None) == LEAD


def test_a_primary_the_sentinels_hold_down_waits_for_their_verdict() -> None:
    for flags in ("master,s_down", "master,s_down,o_down", "master,failover_in_progress"):
        assert decide(6379, [state(6379, flags)], None) == WAIT


def test_the_newest_configuration_wins_over_a_stale_sentinel() -> None:
    stale, newest = state(6379, "master,s_down,o_down"), state(6381, epoch=2)
    assert decide(6379, [stale, newest], None) == 6381
