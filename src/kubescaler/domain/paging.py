"""Page tokens: a store's opaque paging state, signed so that only states we handed out return.

Pure, and so in the domain rather than in the Cassandra adapter: what a token may be is a rule
of base's lists (a forged token, one signed with another key, or one from another list is a
400), and it is tested without a server. The adapter only moves the paging state's bytes.

The format (a keyed BLAKE2b tag over the list's name and the state, then the state, URL-safe
base64) is the one base has always written, so tokens in flight survive an upgrade. Cassandra
answers a paging state it cannot read with a protocol error and the driver then drops the
connection: a state that does not verify must never reach it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from kubescaler.domain.errors import InvalidInput

_TAG = 16


def _tag(key: bytes, scope: str, state: bytes) -> bytes:
    return hashlib.blake2b(scope.encode() + state, key=key, digest_size=_TAG).digest()


def encode_token(key: bytes, scope: str, state: bytes | None) -> str | None:
    """The token for the page after this one of the list ``scope``; None when none follows."""
    if not state:
        return None
    return base64.urlsafe_b64encode(_tag(key, scope, state) + state).decode()


def decode_token(key: bytes, scope: str, token: str | None) -> bytes | None:
    """The paging state in ``token`` (None: the first page); InvalidInput for a token that is
    malformed, signed with another key or written for another list."""
    if not token:
        return None
    bad = InvalidInput(f"page token is malformed or not from this list: {token!r}")
    try:
        raw = base64.b64decode(token.encode(), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise bad from None
    tag, state = raw[:_TAG], raw[_TAG:]
    if not state or not hmac.compare_digest(tag, _tag(key, scope, state)):
        raise bad
    return state
