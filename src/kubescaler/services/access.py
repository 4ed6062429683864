"""Who may call what: the auth mode's decisions and the stream-open rate limits.

Every public route asks one method here before it does anything else, so a refused caller
never reaches base, Redis' lock path or the lock-keeper. With auth off (the seed's open mode)
only the admin token, when set, guards the mutating endpoints. Over two ports: a
:class:`Verifier` of tokens (``adapters.tokens.TokenVerifier``; none with auth off) and a
:class:`Limiter` of stream opens (``adapters.ratelimit.RateLimiter``; none in main).
"""

from __future__ import annotations

import hmac
import math
import uuid
from collections.abc import Sequence
from typing import Protocol

from kubescaler.domain.admission import Limit, open_limits
from kubescaler.domain.errors import TooManyRequests, Unauthorized
from kubescaler.domain.identity import Identity, require_admin, require_user
from kubescaler.settings import Settings

NO_TOKEN = (
    "a token is needed: send `Authorization: Bearer <token>` (or, on GET, the {cookie} cookie "
    "or ?access_token=); `kubescaler token USER_ID` mints one locally"
)


class Verifier(Protocol):
    """Verifies a token: the identity it names, or Unauthorized saying what is wrong with it."""

    def identity(self, token: str) -> Identity: ...


class Limiter(Protocol):
    """Spends one open's worth of several limits at once."""

    async def take(self, limits: Sequence[Limit]) -> tuple[Limit, int] | None:
        """None when every limit had room; else the limit that refused and its wait in ms."""
        ...

    async def aclose(self) -> None: ...


class Access:
    """The auth mode (on when there is a verifier) and the stream-open limiter (when given)."""

    def __init__(
        self, settings: Settings, verifier: Verifier | None, limiter: Limiter | None = None
    ) -> None:
        self.auth = settings.auth
        self.limits = settings.limits
        self.admin_token = settings.admin_token
        self.verifier = verifier
        self.limiter = limiter

    async def aclose(self) -> None:
        if self.limiter is not None:
            await self.limiter.aclose()

    @property
    def enabled(self) -> bool:
        return self.verifier is not None

    def identify(self, token: str | None) -> Identity:
        """The token's identity (auth on); Unauthorized without a token or with a bad one."""
        if self.verifier is None:
            raise Unauthorized("auth is off here (KUBESCALER_AUTH_ENABLED=false)")
        if not token:
            raise Unauthorized(NO_TOKEN.format(cookie=self.auth.cookie))
        return self.verifier.identity(token)

    def as_user(
        self, token: str | None, user_id: uuid.UUID, *, admin_may: bool = False
    ) -> Identity | None:
        """The user ``user_id`` itself (or an admin, where ``admin_may``); None with auth off."""
        if self.verifier is None:
            return None
        identity = self.identify(token)
        require_user(identity, user_id, admin_may=admin_may)
        return identity

    def as_reader(self, token: str | None) -> Identity | None:
        """Anyone with a valid token, or anyone at all with auth off or public lists."""
        if self.verifier is None or self.auth.public_lists:
            return None
        return self.identify(token)

    def as_admin(self, bearer: str | None) -> None:
        """The admin token (when set), or with auth on a token with the admin role."""
        if self.admin_token and bearer and hmac.compare_digest(bearer, self.admin_token):
            return
        if self.verifier is not None:
            require_admin(self.identify(bearer), self.auth.admin_role)
        elif self.admin_token:
            raise Unauthorized(
                "this endpoint needs the admin token: "
                "Authorization: Bearer <KUBESCALER_ADMIN_TOKEN>"
            )

    async def open_stream(
        self,
        token: str | None,
        user_id: uuid.UUID,
        session: str | None,
        address: str,
    ) -> None:
        """A stream open's admission: the user's own token (auth on), then both rate limits.

        Raises (401, 403, 429) before anything reaches the lock path.
        """
        identity = self.as_user(token, user_id)
        if self.limiter is None:
            return
        limits = open_limits(
            session=session,
            subject=identity.subject if identity else None,
            address=address,
            per_session=self.limits.opens_per_session,
            per_address=self.limits.opens_per_address,
            window_s=self.limits.window_s,
        )
        refused = await self.limiter.take(limits)
        if refused is None:
            return
        limit, wait_ms = refused
        wait_s = max(1, math.ceil(wait_ms / 1000))
        raise TooManyRequests(
            f"too many stream opens from this {limit.what}: at most {limit.count} per "
            f"{limit.period_ms / 1000:g} s; try again in {wait_s} s",
            retry_after_s=wait_s,
            limit=limit.what,
        )
