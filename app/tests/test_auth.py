"""Register, login and /auth/me as a client sees them."""

from __future__ import annotations

import httpx
import jwt

CREDENTIALS = {"email": "Maria.Silva@Example.com", "password": "s3nha forte demais"}


async def test_register_login_me(client: httpx.AsyncClient) -> None:
    registered = await client.post("/auth/register", json=CREDENTIALS)
    assert registered.status_code == 201
    assert registered.json()["email"] == "maria.silva@example.com"
    assert "password" not in registered.text
    assert "hash" not in registered.text

    duplicate = await client.post("/auth/register", json=CREDENTIALS | {"email": "maria.silva@example.com"})
    assert duplicate.status_code == 409

    login = await client.post("/auth/login", json=CREDENTIALS)
    assert login.status_code == 200
    token = login.json()["access_token"]
    assert login.json()["token_type"] == "bearer"

    me = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["id"] == registered.json()["id"]


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


async def test_register_validates_input(client: httpx.AsyncClient) -> None:
    assert (
        await client.post("/auth/register", json={"email": "not-an-email", "password": "longenough"})
    ).status_code == 422
    assert (
        await client.post("/auth/register", json={"email": "a@example.com", "password": "short"})
    ).status_code == 422
