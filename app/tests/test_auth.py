"""Register, login and /auth/me as a client sees them."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import httpx
import jwt
import pytest
from app_helpers import AppFactory
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from invoice_service import security
from invoice_service.main import create_app
from invoice_service.routes.auth import user_by_email
from invoice_service.settings import DEFAULT_JWT_SECRET, Settings

CREDENTIALS = {"email": "Maria.Silva@Example.com", "password": "s3nha forte demais"}


async def test_register_login_me(client: httpx.AsyncClient) -> None:
    registered = await client.post("/auth/register", json=CREDENTIALS)
    assert registered.status_code == 202
    assert CREDENTIALS["password"] not in registered.text
    assert "argon2" not in registered.text

    login = await client.post("/auth/login", json=CREDENTIALS)
    assert login.status_code == 200
    token = login.json()["access_token"]
    assert login.json()["token_type"] == "bearer"

    me = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["email"] == "maria.silva@example.com"


async def test_registering_an_existing_address_looks_like_a_new_one_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    first = {"email": "ana.costa@example.com", "password": "the first password"}
    new = await client.post("/auth/register", json=first)
    again = await client.post(
        "/auth/register", json={"email": "Ana.Costa@Example.com", "password": "an attackers password"}
    )
    fresh = await client.post(
        "/auth/register", json={"email": "nobody.yet@example.com", "password": "p" * 12}
    )
    # The caller cannot tell an existing address from a free one: same status, same body.
    assert new.status_code == again.status_code == fresh.status_code == 202
    assert new.json() == again.json() == fresh.json()
    # and the existing account keeps its owner's password.
    assert (await client.post("/auth/login", json=first)).status_code == 200
    stolen = {"email": "ana.costa@example.com", "password": "an attackers password"}
    assert (await client.post("/auth/login", json=stolen)).status_code == 401


async def test_failed_logins_to_one_account_from_many_addresses_are_limited(
    app_client: AppFactory,
) -> None:
    """RATE_LIMIT_LOGIN_ACCOUNT counts an account's failed logins whatever the client address: a
    password-guessing botnet gets 429 on that account, while the owner's other accounts, and other
    accounts from the same addresses, are unaffected."""
    victim = {"email": f"victim-{uuid.uuid4().hex[:8]}@example.com", "password": "the right password"}
    other = {"email": f"other-{uuid.uuid4().hex[:8]}@example.com", "password": "another password"}
    async with app_client(RATE_LIMIT_ENABLED=True, RATE_LIMIT_LOGIN_ACCOUNT="3/hour") as setup:
        for credentials in (victim, other):
            assert (await setup.post("/auth/register", json=credentials)).status_code == 202
    statuses = []
    for attempt in range(5):  # each guess from another address: the per-client limit never applies
        async with app_client(
            peer=f"198.51.100.{10 + attempt}", RATE_LIMIT_ENABLED=True, RATE_LIMIT_LOGIN_ACCOUNT="3/hour"
        ) as bot:
            guess = {"email": victim["email"].upper(), "password": f"guess number {attempt}"}
            response = await bot.post("/auth/login", json=guess)
            statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429, 429]
    assert int(response.headers["retry-after"]) > 60  # the hour's window
    async with app_client(
        peer="198.51.100.99", RATE_LIMIT_ENABLED=True, RATE_LIMIT_LOGIN_ACCOUNT="3/hour"
    ) as client:
        # the right password is refused too while the account is limited (no oracle for guesses)
        assert (await client.post("/auth/login", json=victim)).status_code == 429
        assert (await client.post("/auth/login", json=other)).status_code == 200


async def test_wrong_password_and_unknown_user_get_the_same_401(client: httpx.AsyncClient) -> None:
    await client.post("/auth/register", json={"email": "joao@example.com", "password": "right password"})
    wrong = await client.post("/auth/login", json={"email": "joao@example.com", "password": "wrong password"})
    unknown = await client.post("/auth/login", json={"email": "nobody@example.com", "password": "whatever1"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def test_me_refuses_missing_forged_and_expired_tokens(client: httpx.AsyncClient) -> None:
    assert (await client.get("/auth/me")).status_code == 401
    forged = jwt.encode(
        {"sub": "00000000-0000-0000-0000-000000000001", "iat": 0, "exp": 9999999999, "typ": "access"},
        "not-the-secret-" + "y" * 32,
        algorithm="HS256",
    )
    assert (await client.get("/auth/me", headers={"Authorization": f"Bearer {forged}"})).status_code == 401
    settings = client.app.state.core.settings  # type: ignore[attr-defined]
    expired = jwt.encode(
        {"sub": "00000000-0000-0000-0000-000000000001", "iat": 0, "exp": 1, "typ": "access"},
        settings.JWT_SECRET.get_secret_value(),
        algorithm="HS256",
    )
    assert (await client.get("/auth/me", headers={"Authorization": f"Bearer {expired}"})).status_code == 401


def test_a_verified_token_is_remembered_but_still_expires_and_keeps_to_its_secret(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request of a client carries the same token: it is verified once per process, not per
    request, yet it expires on time, and another secret does not accept it."""
    settings = make_settings()
    other = make_settings(JWT_SECRET="another-secret-" + "z" * 32)
    user_id = uuid.uuid4()
    token = jwt.encode(
        {"sub": str(user_id), "iat": int(time.time()), "exp": time.time() + 1.5, "typ": "access"},
        settings.JWT_SECRET.get_secret_value(),
        algorithm="HS256",
    )
    assert security.decode_access_token(token, settings) == user_id

    def no_second_verification(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the token was verified again")

    with monkeypatch.context() as patch:
        patch.setattr(security.jwt, "decode", no_second_verification)
        assert security.decode_access_token(token, settings) == user_id
    assert security.decode_access_token(token, other) is None
    time.sleep(1.6)
    assert security.decode_access_token(token, settings) is None


async def test_register_validates_input(client: httpx.AsyncClient) -> None:
    assert (
        await client.post("/auth/register", json={"email": "not-an-email", "password": "longenough"})
    ).status_code == 422
    assert (
        await client.post("/auth/register", json={"email": "a@example.com", "password": "short"})
    ).status_code == 422


async def test_password_hashing_runs_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """argon2 (tens of ms of CPU) runs in the hashing pool's threads, never on the loop's thread."""
    threads: list[str] = []
    for name in ("hash_password", "verify_password"):
        original = getattr(security, name)

        def spy(*args: str, _original: Callable[..., object] = original) -> object:
            threads.append(threading.current_thread().name)
            return _original(*args)

        monkeypatch.setattr(security, name, spy)
    credentials = {"email": "thread@example.com", "password": "right password"}
    assert (await client.post("/auth/register", json=credentials)).status_code == 202
    assert (await client.post("/auth/login", json=credentials)).status_code == 200
    assert (await client.post("/auth/login", json={**credentials, "password": "wrong!!!"})).status_code == 401
    assert len(threads) == 3
    assert all(name.startswith("argon2") for name in threads), threads
    assert threading.current_thread().name not in threads


async def test_the_login_lookup_is_served_by_the_unique_index(database_url: str) -> None:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SET enable_seqscan = off"))
            query = user_by_email("Someone@Example.com").compile(
                dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
            )
            plan = "\n".join((await conn.execute(text(f"EXPLAIN {query}"))).scalars())
    finally:
        await engine.dispose()
    assert "Index Scan using users_email_key" in plan, plan
    assert "'someone@example.com'" in plan, plan


def test_the_api_refuses_to_start_with_the_public_default_secret(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(RuntimeError, match="JWT_SECRET is the public default"):
        create_app(make_settings(JWT_SECRET=DEFAULT_JWT_SECRET))
    # Local development may keep it, explicitly.
    assert create_app(make_settings(JWT_SECRET=DEFAULT_JWT_SECRET, DEBUG=True))
