"""The fault suite's judge: what counts as two holders, a reused or backward token, and when the
probes say the system had recovered."""

from __future__ import annotations

from kubescaler_dev.contention.judge import Stream, judge, recovery
from kubescaler_dev.contention.workload import Answer


def stream(session: str, token: int, first: int, last: int, pair: str = "u:p") -> Stream:
    s = Stream(pair, session, token, "pod-a")
    s.saw(first)
    s.saw(last)
    return s


def test_two_sessions_streaming_one_pair_at_overlapping_times_is_an_overlap() -> None:
    verdict = judge([stream("a", 1, 100, 200), stream("b", 2, 200, 300)])
    assert not verdict.clean
    assert len(verdict.overlaps) == 1
    assert "overlap on u:p" in verdict.describe()


def test_back_to_back_holders_and_other_pairs_do_not_overlap() -> None:
    verdict = judge(
        [
            stream("a", 1, 100, 199),
            stream("b", 2, 200, 300),
            stream("c", 7, 150, 250, pair="u:other"),
        ]
    )
    assert verdict.clean, verdict.describe()


def test_one_sessions_reconnect_may_overlap_its_superseded_stream_for_a_moment() -> None:
    verdict = judge([stream("a", 1, 100, 230), stream("a", 2, 200, 400)])
    assert verdict.clean
    assert verdict.handovers_ms == [30]


def test_a_token_granted_twice_is_a_reuse_even_without_overlap() -> None:
    verdict = judge([stream("a", 5, 100, 150), stream("b", 5, 300, 400)])
    assert [(a.session, b.session) for a, b in verdict.reuses] == [("a", "b")]


def test_a_later_sessions_lower_token_went_back() -> None:
    verdict = judge([stream("a", 9, 100, 150), stream("b", 4, 300, 400)])
    assert len(verdict.backwards) == 1
    assert not verdict.clean


def test_a_stream_that_carried_no_data_is_judged_on_its_token_only() -> None:
    empty = Stream("u:p", "b", 3, "pod-b")
    verdict = judge([stream("a", 3, 100, 150), empty])
    assert len(verdict.reuses) == 1
    assert not verdict.overlaps


def answer(at: float, probe: str, ok: bool, what: str = "200") -> Answer:
    return Answer(at, probe, ok, what)


def test_recovery_is_when_every_probe_answered_again_after_its_last_failure() -> None:
    answers = [
        answer(9.0, "login", False, "503 base"),  # before the fault: not counted
        answer(10.5, "login", False, "503 base"),
        answer(11.0, "login", True),
        answer(12.0, "open", False, "ReadTimeout"),
        answer(13.0, "open", False, "502"),
        answer(14.5, "open", True),
        answer(15.0, "page", True),
    ]
    got = recovery(answers, since=10.0)
    assert got.seconds == 4.5
    assert got.failed == {"login 503 base": 1, "open ReadTimeout": 1, "open 502": 1}
    assert got.unclear == 2  # a 503 naming its dependency is clear; a timeout or 502 is not


def test_a_probe_that_never_answered_again_never_recovered() -> None:
    got = recovery([answer(1.0, "page", False, "503 cassandra")], since=0.0)
    assert got.seconds == float("inf")


def test_no_failure_is_no_recovery_time() -> None:
    assert recovery([answer(1.0, "page", True)], since=0.0).seconds == 0.0
