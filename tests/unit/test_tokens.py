"""Token verification and minting (adapters/tokens, PyJWT): every refusal says why, in words."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kubescaler.adapters import tokens
from kubescaler.adapters.tokens import TokenVerifier, mint, read_or_make_secret
from kubescaler.domain.errors import Unauthorized
from kubescaler.settings import AuthSettings, SettingsError

SECRET = "s" * 32
USER = "123e4567-e89b-12d3-a456-426614174000"
HS = AuthSettings(enabled=True, secret=SECRET)


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": USER, "iss": "kubescaler-local", "aud": "kubescaler", "exp": now + 60, **extra}


def refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        verifier.identity(token)
    assert token not in caught.value.message
    return caught.value.message


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_minted_token_verifies_with_subject_and_admin_role() -> None:
    """`kubescaler token`'s tokens carry what the verifier checks: iss, aud, exp, the role."""
    verifier = TokenVerifier(HS)
    who = verifier.identity(mint(HS, SECRET, USER, admin=True, ttl_s=120))
    assert who.subject == USER
    assert who.admin
    assert 110_000 < who.expires_at_ms - time.time() * 1000 <= 120_000
    assert not verifier.identity(mint(HS, SECRET, USER)).admin


def test_minting_follows_custom_claim_names() -> None:
    """A dotted roles claim is written nested, the subject under its configured claim."""
    auth = msgspec.structs.replace(HS, subject_claim="uid", roles_claim="realm_access.roles")
    raw = jwt.decode(mint(auth, SECRET, USER, admin=True), options={"verify_signature": False})
    assert raw["uid"] == USER
    assert raw["realm_access"] == {"roles": ["admin"]}
    assert TokenVerifier(auth).identity(mint(auth, SECRET, USER, admin=True)).admin


OTHER_SECRET = "another-secret-of-thirty-two-bytes!"


def claims_without(name: str) -> dict[str, Any]:
    return {k: v for k, v in claims().items() if k != name}


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda: jwt.encode(claims(exp=int(time.time()) - 120), SECRET), "has expired"),
        (lambda: jwt.encode(claims(aud="someone-else"), SECRET), "not for this audience"),
        (lambda: jwt.encode(claims(iss="elsewhere"), SECRET), "not from this issuer"),
        (lambda: jwt.encode(claims(), OTHER_SECRET), "signature does not verify"),
        (lambda: jwt.encode(claims_without("exp"), SECRET), "no 'exp' claim"),
        (lambda: jwt.encode(claims_without("aud"), SECRET), "no 'aud' claim"),
        (lambda: jwt.encode(claims(nbf=int(time.time()) + 600), SECRET), "not valid yet"),
        (lambda: jwt.encode(claims(), SECRET * 2, algorithm="HS512"), "algorithm is not accepted"),
        (lambda: f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}.", "not accepted"),
        (lambda: "not-a-jwt", "malformed"),
    ],
    ids=[
        "expired",
        "audience",
        "issuer",
        "signature",
        "no-exp",
        "no-aud",
        "not-yet",
        "hs512",
        "alg-none",
        "garbage",
    ],
)
def test_bad_tokens_are_refused_saying_why(make_token: Callable[[], str], reason: str) -> None:
    """Each kind of bad token is a 401 whose message names the fault and never the token.

    Tokens are made when the test runs, not at collection: a suite that runs for
    minutes would otherwise see every token expire before its check.
    """
    assert reason in refusal(TokenVerifier(HS), make_token())


def test_leeway_forgives_a_little_clock_skew() -> None:
    """A token 10 s past its exp passes with 30 s of leeway and fails with none."""
    token = jwt.encode(claims(exp=int(time.time()) - 10), SECRET)
    assert TokenVerifier(HS).identity(token).subject == USER
    strict = msgspec.structs.replace(HS, leeway_s=0.0)
    assert "expired" in refusal(TokenVerifier(strict), token)


def test_empty_issuer_and_audience_are_not_checked() -> None:
    """With issuer and audience empty, tokens without (or with other) iss and aud pass."""
    loose = msgspec.structs.replace(HS, issuer="", audience="")
    token = jwt.encode({"sub": USER, "exp": int(time.time()) + 60, "aud": "x"}, SECRET)
    assert TokenVerifier(loose).identity(token).subject == USER


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_rs256_with_a_pem_public_key(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    """An issuer's RS256 token verifies against its PEM public key; another key's does not."""
    (tmp_path / "issuer.pem").write_text(pem(rsa_key))
    auth = AuthSettings(enabled=True, algorithms=["RS256"], key_file=str(tmp_path / "issuer.pem"))
    verifier = TokenVerifier(auth)
    assert verifier.identity(jwt.encode(claims(), rsa_key, algorithm="RS256")).subject == USER
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert "signature" in refusal(verifier, jwt.encode(claims(), other, algorithm="RS256"))


def test_an_hs256_token_keyed_with_the_public_key_is_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    """Algorithm confusion: HMAC "signed" with the issuer's public PEM is not an RS256 token."""
    (tmp_path / "issuer.pem").write_text(pem(rsa_key))
    auth = AuthSettings(enabled=True, algorithms=["RS256"], key_file=str(tmp_path / "issuer.pem"))
    header = b64({"alg": "HS256", "typ": "JWT"})
    body = b64(claims())
    mac = hmac.new(pem(rsa_key).encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert "algorithm is not accepted" in refusal(TokenVerifier(auth), forged)


def jwks(*keys: tuple[str, ec.EllipticCurvePrivateKey]) -> str:
    out = []
    for kid, key in keys:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        out.append({**jwk, "kid": kid, "alg": "ES256", "use": "sig"})
    return json.dumps({"keys": out})


def test_es256_with_a_jwks_file_picks_the_key_by_kid(tmp_path: Path) -> None:
    """Keys are chosen by the token's kid; an unknown kid is refused naming it."""
    one, two = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "jwks.json").write_text(jwks(("k1", one), ("k2", two)))
    auth = AuthSettings(enabled=True, algorithms=["ES256"], key_file=str(tmp_path / "jwks.json"))
    verifier = TokenVerifier(auth)
    for kid, key in (("k1", one), ("k2", two)):
        token = jwt.encode(claims(), key, algorithm="ES256", headers={"kid": kid})
        assert verifier.identity(token).subject == USER
    crossed = jwt.encode(claims(), one, algorithm="ES256", headers={"kid": "k2"})
    assert "signature" in refusal(verifier, crossed)
    unknown = jwt.encode(claims(), one, algorithm="ES256", headers={"kid": "k9"})
    assert "'k9'" in refusal(verifier, unknown)
    no_kid = jwt.encode(claims(), one, algorithm="ES256")
    assert "no key id" in refusal(verifier, no_kid)


def test_a_rotated_jwks_file_is_read_again_for_a_new_kid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a key rotation the file is re-read (at most every JWKS_RELOAD_S) for a new kid."""
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwks.json"
    path.write_text(jwks(("old", old)))
    auth = AuthSettings(enabled=True, algorithms=["ES256"], key_file=str(path))
    verifier = TokenVerifier(auth)
    path.write_text(jwks(("old", old), ("new", new)))
    token = jwt.encode(claims(), new, algorithm="ES256", headers={"kid": "new"})
    assert "'new'" in refusal(verifier, token)  # read moments ago: not again yet
    monkeypatch.setattr(tokens, "JWKS_RELOAD_S", 0.0)
    assert verifier.identity(token).subject == USER


@pytest.mark.parametrize(
    ("auth", "wanted"),
    [
        (AuthSettings(enabled=True, secret="short"), "at least 32 bytes"),
        (AuthSettings(enabled=True, algorithms=[]), "is empty"),
        (AuthSettings(enabled=True, algorithms=["none"], secret=SECRET), "none not accepted"),
        (AuthSettings(enabled=True, algorithms=["HS256", "RS256"], secret=SECRET), "mixes"),
        (AuthSettings(enabled=True, algorithms=["RS256"]), "KUBESCALER_AUTH_KEY_FILE must"),
        (
            AuthSettings(enabled=True, algorithms=["RS256"], key_file="/nonexistent/jwks.json"),
            "No such file",
        ),
    ],
    ids=["short-secret", "no-algorithm", "none", "mixed", "no-key-file", "missing-file"],
)
def test_settings_that_cannot_verify_are_refused_at_start(auth: AuthSettings, wanted: str) -> None:
    """Auth on with an unusable key or algorithm list is a settings error naming the fix."""
    with pytest.raises(SettingsError, match=wanted):
        TokenVerifier(auth)


def test_a_key_file_that_is_neither_pem_nor_jwks_is_named(tmp_path: Path) -> None:
    """A garbled key file is refused at start, naming the file."""
    (tmp_path / "key").write_text("hello")
    auth = AuthSettings(enabled=True, algorithms=["RS256"], key_file=str(tmp_path / "key"))
    with pytest.raises(SettingsError, match="not a PEM public key or a JWKS"):
        TokenVerifier(auth)


def test_minting_refuses_public_key_algorithms() -> None:
    """Only HMAC tokens are minted locally; an RS256 deployment's tokens come from its issuer."""
    with pytest.raises(SettingsError, match="the issuer mints them"):
        mint(AuthSettings(algorithms=["RS256"]), SECRET, USER)


def test_the_local_key_is_made_once_and_private(tmp_path: Path) -> None:
    """The first read makes a 0600 key of at least 32 bytes; later reads return the same one."""
    path = tmp_path / "state" / "auth.key"
    first = read_or_make_secret(path)
    assert len(first.encode()) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_or_make_secret(path) == first
