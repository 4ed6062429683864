"""Which rate limits a stream open counts against, and who the client is. Pure.

An open counts once against its session's limit and once against its client address's; both
are checked together and the open passes only when both have room (``adapters/ratelimit.py``
keeps the counts in Redis, so every stream instance sees the same ones).
"""

from __future__ import annotations

import ipaddress

import msgspec

KEY_PREFIX = "kubescaler:ratelimit:open"


class Limit(msgspec.Struct, frozen=True):
    """At most ``count`` per ``period_ms`` for ``key``: a burst of ``count``, then evenly spread."""

    key: str
    count: int
    period_ms: int
    what: str  # "session" or "address", for the refusal's message


def client_address(peer: str | None, forwarded_for: str | None, proxy_hops: int) -> str:
    """The client's address behind ``proxy_hops`` trusted proxies.

    Each proxy appends the address it was reached from to X-Forwarded-For, so the N-th entry
    from the right was written by the N-th proxy from us, which we trust; anything to its left
    came from the client and can be forged. With fewer entries than hops the leftmost is the
    best there is. No hops: the connection's peer.
    """
    hops = [a.strip() for a in (forwarded_for or "").split(",") if a.strip()]
    if proxy_hops <= 0 or not hops:
        return peer or "unknown"
    candidate = hops[-min(proxy_hops, len(hops))]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer or "unknown"


def open_limits(
    *,
    session: str | None,
    subject: str | None,
    address: str,
    per_session: int,
    per_address: int,
    window_s: float,
) -> list[Limit]:
    """The limits one stream open counts against (a count of 0 is no limit).

    A session's budget is scoped by the token's subject when there is one, so nobody can spend
    another user's budget by naming that user's session id.
    """
    period_ms = max(1, int(window_s * 1000))
    limits = []
    if per_session > 0 and session is not None:
        owner = f"{subject}/{session}" if subject else session
        limits.append(Limit(f"{KEY_PREFIX}:session:{owner}", per_session, period_ms, "session"))
    if per_address > 0:
        limits.append(Limit(f"{KEY_PREFIX}:address:{address}", per_address, period_ms, "address"))
    return limits
