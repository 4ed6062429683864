"""The small set of failures kubescaler reports; each maps to one HTTP status, once."""

from __future__ import annotations

from typing import Any


class KubescalerError(Exception):
    """Base of the domain errors. ``status`` is the HTTP status it maps to."""

    status = 500

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class InvalidInput(KubescalerError):
    """The request names something malformed: a bad UUID, a bad body, a bad parameter."""

    status = 400


class Unauthorized(KubescalerError):
    """No token, or one that does not verify (expired, wrong audience, bad signature, ...)."""

    status = 401


class Forbidden(KubescalerError):
    """The request is well-formed but not allowed (a user not bound to the profile)."""

    status = 403


class NotFound(KubescalerError):
    """An id that names nothing."""

    status = 404

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"{kind} {ident} not found", kind=kind, id=str(ident))


class Conflict(KubescalerError):
    """Someone else holds what was asked for (a lock held by another owner)."""

    status = 409


class TooManyRequests(KubescalerError):
    """A rate limit was reached; ``retry_after_s`` says when the next try can pass."""

    status = 429

    def __init__(self, message: str, retry_after_s: int, **extra: Any) -> None:
        super().__init__(message, retry_after_s=retry_after_s, **extra)
        self.retry_after_s = retry_after_s


class DependencyUnavailable(KubescalerError):
    """A dependency (cassandra, redis, base, lock-keeper) did not answer; never hidden as empty."""

    status = 503

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency} unavailable: {detail}", dependency=dependency)
        self.dependency = dependency
