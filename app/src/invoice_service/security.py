"""Password hashing (argon2id) and access tokens (JWT, HS256)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from invoice_service.settings import Settings

_hasher = PasswordHasher()
ALGORITHM = "HS256"


def hash_password(password: str) -> str:
    """An argon2id hash with a random salt."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether password matches; never raises on a wrong password or a corrupt hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Verified against when the e-mail is unknown, so both paths cost one argon2 verification.
DUMMY_HASH = _hasher.hash("dummy password for constant-time login")


def create_access_token(user_id: uuid.UUID, settings: Settings) -> tuple[str, int]:
    """A signed token for user_id and its lifetime in seconds."""
    lifetime = settings.JWT_EXPIRE_MINUTES * 60
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": now, "exp": now + timedelta(seconds=lifetime), "typ": "access"}
    return jwt.encode(claims, settings.JWT_SECRET.get_secret_value(), algorithm=ALGORITHM), lifetime


def decode_access_token(token: str, settings: Settings) -> uuid.UUID | None:
    """The user id of a valid, unexpired access token; None otherwise."""
    try:
        claims = jwt.decode(
            token,
            settings.JWT_SECRET.get_secret_value(),
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp", "iat"]},
        )
        if claims.get("typ") != "access":
            return None
        return uuid.UUID(str(claims["sub"]))
    except (jwt.PyJWTError, ValueError):
        return None
