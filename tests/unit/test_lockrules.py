"""Every branch of the pure lock rules (domain/lockrules.py), one behaviour per test."""

from __future__ import annotations

import pytest
from lockfakes import Clock, command

from kubescaler.domain import lockrules as rules
from kubescaler.domain.lockrules import Apply, Busy, Resend, Tally, Vote
from kubescaler.domain.locks import outcome

CLOCK = Clock()
NOW = CLOCK.now
WON, REFUSED, SILENT = Vote(answer="won"), Vote(answer="refused"), Vote(answer="silent")


def tally_of(*votes: Vote, started: int = NOW, elapsed: int = 5, ttl: int = 10_000) -> Tally:
    return rules.tally(votes, started, elapsed, ttl, 0.01)


@pytest.mark.parametrize(("masters", "needed"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_quorum_is_a_strict_majority(masters: int, needed: int) -> None:
    """N//2+1 of N masters."""
    assert rules.quorum(masters) == needed


@pytest.mark.parametrize(
    ("wins", "refusals", "expected"),
    [
        (2, 0, "ok"),
        (3, 0, "ok"),
        (2, 1, "ok"),
        (1, 2, "held"),
        (0, 2, "held"),
        (1, 1, "unavailable"),
        (1, 0, "unavailable"),
        (0, 1, "unavailable"),
        (0, 0, "unavailable"),
    ],
)
def test_status_of_three_masters(wins: int, refusals: int, expected: str) -> None:
    """ok on 2 wins; held once refusals alone rule 2 wins out; otherwise unavailable."""
    assert rules.status(wins, refusals, 3) == expected


def test_validity_subtracts_elapsed_time_and_drift() -> None:
    """TTL 10 s, 30 ms elapsed, drift 1 %: 10000 - 30 - (100 + 2)."""
    assert rules.validity_ms(10_000, 30, 0.01) == 9_868


def test_tally_names_the_holder_with_the_longest_ttl_and_a_silent_masters_error() -> None:
    """Refusals report the holder that lasts longest; a silent master's error is kept."""
    got = tally_of(
        Vote(answer="refused", holder="a", ttl_ms=10),
        Vote(answer="refused", holder="b", ttl_ms=900),
        Vote(answer="silent", error="TimeoutError: x"),
    )
    assert (got.status, got.holder, got.holder_ttl_ms, got.error) == (
        "held",
        "b",
        900,
        "TimeoutError: x",
    )
    assert got.answered == 2


def test_tally_counts_validity_from_the_start_of_the_vote() -> None:
    """expires_at = started + TTL - elapsed - drift."""
    got = tally_of(WON, WON, SILENT, elapsed=5)
    assert got.ok
    assert got.expires_at_ms == NOW + 10_000 - 5 - 102


def test_a_negative_holder_ttl_reads_as_zero() -> None:
    """PTTL of a key without expiry (-1) is no negative expiry."""
    assert tally_of(Vote(answer="refused", holder="a", ttl_ms=-1), REFUSED, WON).holder_ttl_ms == 0


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("alice#7", ("alice", 7)),
        ("a#b#3", ("a#b", 3)),
        ("alice", ("alice", 0)),
        ("x#y", ("x#y", 0)),
    ],
)
def test_lock_values_carry_the_owner_and_its_token_bound(
    value: str, parsed: tuple[str, int]
) -> None:
    """owner#bound, split at the last '#'; a value without a numeric bound is all owner."""
    assert rules.parse_lock_value(value) == parsed
    if parsed[1]:
        assert rules.lock_value(*parsed) == value


def test_a_claim_taken_applies_with_the_newest_token() -> None:
    """The in-flight marker set by this call: apply, knowing the pair's newest token."""
    assert rules.on_claim(True, None, 4) == Apply(4)


def test_a_claim_already_applied_resends_the_stored_outcome() -> None:
    """A request id already applied: resend its stored outcome (never apply twice)."""
    stored = outcome(command("acquire", "a", clock=CLOCK), "granted", NOW, fencing_token=1)
    assert rules.on_claim(False, stored, 0) == Resend(stored)


def test_a_claim_in_flight_elsewhere_is_busy() -> None:
    """A request id another worker is applying: busy, left pending."""
    assert rules.on_claim(False, None, 0) == Busy()


def test_a_command_is_expired_only_after_its_deadline() -> None:
    """At the deadline it is still applied; one millisecond later it is expired."""
    cmd = command("acquire", "a", clock=CLOCK, deadline_in_ms=0)
    assert rules.expired(cmd, NOW) is None
    late = rules.expired(cmd, NOW + 1)
    assert late is not None
    assert late.result == "expired"


def test_an_acquire_is_bound_above_the_newest_token() -> None:
    """An acquire's token bound is one above the counter it read."""
    assert rules.acquire_bound(0) == 1
    assert rules.acquire_bound(41) == 42


def test_after_an_acquire_vote_held_is_denied_with_the_holders_expiry() -> None:
    """Refused by another owner: denied, naming it and when its hold ends."""
    got = tally_of(Vote(answer="refused", holder="b", ttl_ms=500), REFUSED, WON)
    out = rules.after_acquire_vote(command("acquire", "a", clock=CLOCK), got, NOW)
    assert out is not None
    assert (out.result, out.holder, out.expires_at_ms) == ("denied", "b", NOW + 500)


def test_after_an_acquire_vote_too_few_answers_is_unavailable() -> None:
    """Silent masters: quorum_unavailable saying how many answered and how many were needed."""
    out = rules.after_acquire_vote(
        command("acquire", "a", clock=CLOCK), tally_of(WON, SILENT, SILENT), NOW
    )
    assert out is not None
    assert out.result == "quorum_unavailable"
    assert out.detail.startswith("lock quorum unavailable: 1/3 masters answered, 2 needed")


def test_after_an_acquire_vote_a_spent_validity_is_unavailable() -> None:
    """A quorum slower than the TTL is no grant."""
    got = tally_of(WON, WON, WON, elapsed=20_000)
    out = rules.after_acquire_vote(command("acquire", "a", clock=CLOCK), got, NOW)
    assert out is not None
    assert "validity elapsed during the vote" in out.detail


def test_after_an_acquire_vote_a_quorum_goes_on_to_fencing() -> None:
    """A valid quorum is not decided yet: the token comes next."""
    assert (
        rules.after_acquire_vote(
            command("acquire", "a", clock=CLOCK), tally_of(WON, WON, SILENT), NOW
        )
        is None
    )


def test_a_token_read_inside_the_validity_is_granted() -> None:
    """A token read before the validity ends: granted with it."""
    got = tally_of(WON, WON, WON)
    out = rules.after_fence(command("acquire", "a", clock=CLOCK), got, 9, got.expires_at_ms - 1)
    assert (out.result, out.fencing_token, out.expires_at_ms) == ("granted", 9, got.expires_at_ms)


def test_a_token_read_at_or_after_the_validity_end_is_no_grant() -> None:
    """A token read at the validity's end: no grant, no token handed out."""
    got = tally_of(WON, WON, WON)
    out = rules.after_fence(command("acquire", "a", clock=CLOCK), got, 9, got.expires_at_ms)
    assert out.result == "quorum_unavailable"
    assert out.fencing_token == 0


def test_a_refresh_refused_by_the_masters_is_lost() -> None:
    """Refused by the masters: lost, not the owner any more."""
    cmd = command("refresh", "a", 3, clock=CLOCK)
    out = rules.after_refresh_vote(cmd, tally_of(REFUSED, REFUSED, WON), 3, NOW)
    assert (out.result, out.detail) == ("lost", "not the owner any more")


def test_a_refresh_without_a_quorum_is_unavailable() -> None:
    """Too few answers to a refresh: quorum_unavailable, not lost."""
    out = rules.after_refresh_vote(
        command("refresh", "a", 3, clock=CLOCK), tally_of(WON, SILENT, SILENT), 3, NOW
    )
    assert out.result == "quorum_unavailable"


def test_a_refresh_whose_validity_is_spent_is_unavailable() -> None:
    """An extend slower than the TTL: quorum_unavailable."""
    got = tally_of(WON, WON, WON, elapsed=20_000)
    out = rules.after_refresh_vote(command("refresh", "a", 3, clock=CLOCK), got, 3, NOW)
    assert "validity elapsed during the vote" in out.detail


def test_a_refresh_of_a_superseded_grant_is_lost_naming_the_newer_token() -> None:
    """An older grant's refresh: lost, with superseded_by = the newer token."""
    out = rules.after_refresh_vote(
        command("refresh", "a", 3, clock=CLOCK), tally_of(WON, WON, WON), 5, NOW
    )
    assert (out.result, out.fencing_token, out.superseded_by) == ("lost", 3, 5)


def test_a_refresh_by_the_newest_grant_is_refreshed_until_the_new_validity_end() -> None:
    """The newest grant's refresh: refreshed until the extend's validity ends."""
    got = tally_of(WON, WON, WON)
    out = rules.after_refresh_vote(command("refresh", "a", 5, clock=CLOCK), got, 5, NOW)
    assert (out.result, out.fencing_token, out.expires_at_ms) == ("refreshed", 5, got.expires_at_ms)


def test_a_refresh_without_a_token_is_not_checked_and_reports_the_newest() -> None:
    """Token 0 (unchecked): refreshed, reporting the pair's newest token."""
    out = rules.after_refresh_vote(
        command("refresh", "a", 0, clock=CLOCK), tally_of(WON, WON, WON), 5, NOW
    )
    assert (out.result, out.fencing_token) == ("refreshed", 5)


def test_a_release_by_a_superseded_grant_is_not_held_before_any_vote() -> None:
    """An older grant's release: not held, decided before asking any master."""
    out = rules.before_release_vote(command("release", "a", 3, clock=CLOCK), 5, NOW)
    assert out is not None
    assert (out.result, out.superseded_by) == ("released", 5)
    assert out.detail == "not held: superseded by fencing token 5"


@pytest.mark.parametrize("token", [0, 5])
def test_a_release_by_the_newest_or_an_unchecked_grant_goes_to_the_masters(token: int) -> None:
    """The newest grant, or token 0: the masters decide."""
    assert rules.before_release_vote(command("release", "a", token, clock=CLOCK), 5, NOW) is None


def test_a_release_that_deleted_a_key_freed_the_pair() -> None:
    """A master deleted the key: released, and the launched marker goes."""
    out, freed = rules.after_release_vote(
        command("release", "a", 5, clock=CLOCK), tally_of(WON, WON, SILENT), NOW
    )
    assert (out.result, out.detail, freed) == ("released", "", True)


def test_a_release_that_deleted_nothing_is_not_held() -> None:
    """No master deleted anything: released, not held."""
    out, freed = rules.after_release_vote(
        command("release", "a", 5, clock=CLOCK), tally_of(REFUSED, REFUSED, SILENT), NOW
    )
    assert (out.result, out.detail, freed) == ("released", "not held", False)


def test_a_release_without_a_quorum_of_answers_is_unavailable() -> None:
    """Fewer than a quorum answered a release: quorum_unavailable."""
    out, freed = rules.after_release_vote(
        command("release", "a", 5, clock=CLOCK), tally_of(WON, SILENT, SILENT), NOW
    )
    assert (out.result, freed) == ("quorum_unavailable", False)


def test_replies_group_by_channel_in_order_and_skip_commands_without_one() -> None:
    """One reply per channel, outcomes in command order; no channel, no reply."""
    a, b, c = (outcome(command("acquire", o, clock=CLOCK), "granted", NOW) for o in "abc")
    assert rules.replies([("x", a), ("", b), ("y", c), ("x", c)]) == {"x": [a, c], "y": [c]}
