"""Password hashing (argon2id) and access tokens (JWT, HS256).

argon2 costs tens of milliseconds of CPU by design; on the event loop it would stall every other
request of the worker. The coroutines below run it in a small thread pool of its own (argon2-cffi
releases the GIL while it hashes), so the loop keeps serving and at most PASSWORD_HASH_THREADS hashes
run at once per process; more logins wait in the pool's queue.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
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

# Two threads: the API runs one process per vCPU, so two hashes per process already fill the box.
PASSWORD_HASH_THREADS = 2
_pool = ThreadPoolExecutor(max_workers=PASSWORD_HASH_THREADS, thread_name_prefix="argon2")


async def hash_password_off_loop(password: str) -> str:
    """hash_password in the hashing pool, leaving the event loop free."""
    return await asyncio.get_running_loop().run_in_executor(_pool, hash_password, password)


async def verify_password_off_loop(password_hash: str, password: str) -> bool:
    """verify_password in the hashing pool, leaving the event loop free."""
    return await asyncio.get_running_loop().run_in_executor(_pool, verify_password, password_hash, password)


def create_access_token(user_id: uuid.UUID, settings: Settings) -> tuple[str, int]:
    """A signed token for user_id and its lifetime in seconds."""
    lifetime = settings.JWT_EXPIRE_MINUTES * 60
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": now, "exp": now + timedelta(seconds=lifetime), "typ": "access"}
    return jwt.encode(claims, settings.JWT_SECRET.get_secret_value(), algorithm=ALGORITHM), lifetime


def bearer_user_id(scheme: str, token: str, settings: Settings) -> uuid.UUID | None:
    """The user id an ``Authorization: <scheme> <token>`` header carries; None unless the scheme is
    Bearer and the token a valid access token (the user may still be gone)."""
    if scheme.lower() != "bearer":
        return None
    return decode_access_token(token.strip(), settings)


# Tokens already verified in this process: (secret, token) -> (user id, expiry as a Unix time). A
# client sends the same token with every request for its lifetime; the HMAC, the base64 and JSON
# decoding and the claim checks are done once per token, not per request. Only what passed every
# check is kept, under its exact text and the secret that verified it; expiry is still checked on
# every use. Bounded: the oldest entry goes first.
VERIFIED_TOKENS_MAX = 4096
_verified: dict[tuple[str, str], tuple[uuid.UUID, float]] = {}


def decode_access_token(token: str, settings: Settings) -> uuid.UUID | None:
    """The user id of a valid, unexpired access token; None otherwise."""
    secret = settings.JWT_SECRET.get_secret_value()
    known = _verified.get((secret, token))
    if known is not None:
        user_id, expires = known
        if time.time() < expires:
            return user_id
        _verified.pop((secret, token), None)
        return None
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp", "iat"]},
        )
        if claims.get("typ") != "access":
            return None
        user_id = uuid.UUID(str(claims["sub"]))
        expires = float(claims["exp"])
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    while len(_verified) >= VERIFIED_TOKENS_MAX:
        _verified.pop(next(iter(_verified)))
    _verified[(secret, token)] = (user_id, expires)
    return user_id
