"""JSON Web Tokens through PyJWT: verifying callers' tokens, and minting local ones.

One kind of key per deployment, as PyJWT advises (RFC 8725 §2.1): HS* tokens with a shared
secret, or asymmetric ones (RS*, PS*, ES*, EdDSA) with the issuer's public key from a PEM file
or a JWKS file. The accepted algorithms come from the settings, never from the token, so
``alg: none`` and an HS256 token "signed" with a public key are refused. A refusal says what
is wrong with the token and never repeats the token.
"""

from __future__ import annotations

import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from jwt.algorithms import get_default_algorithms

from kubescaler.domain.errors import Unauthorized
from kubescaler.domain.identity import Identity, from_claims
from kubescaler.settings import AuthSettings, SettingsError

#: the local HMAC key `./dev up` makes, under KUBESCALER_LOCAL_STATE_DIR
LOCAL_KEY = "auth.key"
HMAC = frozenset({"HS256", "HS384", "HS512"})
#: a JWKS file is read again for an unknown `kid` at most this often (key rotation)
JWKS_RELOAD_S = 10.0
#: the shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash size, 256 bits)
MIN_SECRET_BYTES = 32


def check(auth: AuthSettings) -> None:
    """SettingsError when the auth settings cannot verify anything, saying what to set."""
    algs = set(auth.algorithms)
    known = set(get_default_algorithms()) - {"none"}
    if not algs:
        raise SettingsError("KUBESCALER_AUTH_ALGORITHMS is empty: name one, e.g. HS256 or RS256")
    if unknown := sorted(algs - known):
        raise SettingsError(
            f"KUBESCALER_AUTH_ALGORITHMS: {', '.join(unknown)} not accepted "
            f"(choose from {', '.join(sorted(known))})"
        )
    if algs & HMAC and algs - HMAC:
        raise SettingsError(
            "KUBESCALER_AUTH_ALGORITHMS mixes HMAC (HS*) and public-key algorithms: a key "
            "would be read two ways; choose one kind"
        )
    if algs <= HMAC and len(auth.secret.encode()) < MIN_SECRET_BYTES:
        raise SettingsError(
            f"KUBESCALER_AUTH_SECRET must hold at least {MIN_SECRET_BYTES} bytes for "
            f"{', '.join(sorted(algs))} (`./dev up` makes one in .local/auth.key)"
        )
    if not algs <= HMAC and not auth.key_file:
        raise SettingsError(
            f"KUBESCALER_AUTH_KEY_FILE must name the issuer's public key (PEM or JWKS) for "
            f"{', '.join(sorted(algs))}"
        )


class _Keys:
    """The verification key(s) of an asymmetric issuer: one PEM key, or a JWKS by ``kid``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.single: Any = None
        self.by_kid: dict[str, Any] = {}
        self.loaded_at = 0.0
        self.load()

    def load(self) -> None:
        try:
            text = self.path.read_text()
        except OSError as exc:
            raise SettingsError(f"KUBESCALER_AUTH_KEY_FILE={self.path}: {exc.strerror}") from exc
        self.loaded_at = time.monotonic()
        try:
            if text.lstrip().startswith("{"):
                keys = jwt.PyJWKSet.from_json(text).keys
                self.by_kid = {k.key_id: k.key for k in keys if k.key_id}
                self.single = keys[0].key if len(keys) == 1 else None
            else:
                from cryptography.hazmat.primitives.serialization import load_pem_public_key

                self.single, self.by_kid = load_pem_public_key(text.encode()), {}
        except (jwt.PyJWKSetError, jwt.PyJWKError, ValueError, TypeError) as exc:
            raise SettingsError(
                f"KUBESCALER_AUTH_KEY_FILE={self.path}: not a PEM public key or a JWKS ({exc})"
            ) from exc

    def key(self, kid: Any) -> Any:
        if isinstance(kid, str) and self.by_kid:
            if kid not in self.by_kid and time.monotonic() - self.loaded_at >= JWKS_RELOAD_S:
                self.load()  # the issuer may have rotated its keys
            if kid in self.by_kid:
                return self.by_kid[kid]
            raise Unauthorized(f"the token's key id {kid!r} is not in the issuer's key set")
        if self.single is None:
            raise Unauthorized("the token names no key id (kid), and the key set has several")
        return self.single


def _reason(exc: jwt.PyJWTError, auth: AuthSettings) -> str:
    """What is wrong with a token, in words, without the token."""
    reasons: list[tuple[type[jwt.PyJWTError], str]] = [
        (jwt.ExpiredSignatureError, "the token has expired"),
        (jwt.ImmatureSignatureError, "the token is not valid yet (nbf or iat in the future)"),
        (
            jwt.InvalidAudienceError,
            f"the token is not for this audience (expected {auth.audience!r})",
        ),
        (jwt.InvalidIssuerError, f"the token is not from this issuer (expected {auth.issuer!r})"),
        (jwt.InvalidSignatureError, "the token's signature does not verify"),
        (
            jwt.InvalidAlgorithmError,
            f"the token's algorithm is not accepted (accepted: {', '.join(auth.algorithms)})",
        ),
        (jwt.DecodeError, "the token is malformed (not a signed JWT)"),
    ]
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token has no {exc.claim!r} claim"
    for kind, reason in reasons:
        if isinstance(exc, kind):
            return reason
    return f"the token is not valid ({type(exc).__name__})"


class TokenVerifier:
    """Verifies tokens against the configured key, issuer, audience and leeway."""

    def __init__(self, auth: AuthSettings) -> None:
        check(auth)
        self.auth = auth
        self.keys = None if set(auth.algorithms) <= HMAC else _Keys(Path(auth.key_file))

    def claims(self, token: str) -> dict[str, Any]:
        """The token's claims once it verifies; Unauthorized saying why not."""
        auth = self.auth
        try:
            header = jwt.get_unverified_header(token)
            key = auth.secret if self.keys is None else self.keys.key(header.get("kid"))
            required = ["exp"] + ["iss"] * bool(auth.issuer) + ["aud"] * bool(auth.audience)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=auth.algorithms,
                audience=auth.audience or None,
                issuer=auth.issuer or None,
                leeway=auth.leeway_s,
                options={"require": required, "verify_aud": bool(auth.audience)},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(_reason(exc, auth)) from None
        return claims

    def identity(self, token: str) -> Identity:
        auth = self.auth
        return from_claims(
            self.claims(token),
            subject_claim=auth.subject_claim,
            roles_claim=auth.roles_claim,
            admin_role=auth.admin_role,
        )


def mint(
    auth: AuthSettings, secret: str, subject: str, *, admin: bool = False, ttl_s: float = 3600
) -> str:
    """An HS* token for ``subject`` signed with ``secret``, carrying what ``auth`` checks."""
    algorithm = next((a for a in auth.algorithms if a in HMAC), None)
    if algorithm is None:
        raise SettingsError(
            "only HMAC (HS*) tokens are minted here; with KUBESCALER_AUTH_ALGORITHMS="
            f"{','.join(auth.algorithms)} the issuer mints them"
        )
    now = int(time.time())
    claims: dict[str, Any] = {"iat": now, "nbf": now, "exp": now + int(ttl_s)}
    claims["jti"] = uuid.uuid4().hex
    if auth.issuer:
        claims["iss"] = auth.issuer
    if auth.audience:
        claims["aud"] = auth.audience
    _put(claims, auth.subject_claim, subject)
    if admin:
        _put(claims, auth.roles_claim, [auth.admin_role])
    return jwt.encode(claims, secret, algorithm=algorithm)


def _put(claims: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        claims = claims.setdefault(part, {})
    claims[last] = value


def new_secret() -> str:
    """A fresh HMAC secret: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def read_or_make_secret(path: Path) -> str:
    """The local HMAC secret kept at ``path``, made (mode 0600) on first use."""
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = new_secret()
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret


__all__ = ["TokenVerifier", "check", "mint", "new_secret", "read_or_make_secret"]
