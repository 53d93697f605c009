"""FastAPI dependencies: the app state built by the lifespan, database sessions, the current user."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from invoice_service.models import User
from invoice_service.ratelimit import RateLimits
from invoice_service.security import bearer_user_id
from invoice_service.settings import Settings


@dataclass
class AppState:
    """What the lifespan opens and closes."""

    settings: Settings
    engine: AsyncEngine
    # The same pool in autocommit mode, for reads that need no shared snapshot (the list).
    read_engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis | None
    limits: RateLimits


async def get_state(request: Request) -> AppState:
    """The state of the running app. (async: FastAPI runs a plain `def` dependency in its thread
    pool, a thread hop per request for an attribute read.)"""
    return request.app.state.core


async def get_settings(request: Request) -> Settings:
    """The app's settings (those create_app was given)."""
    return request.app.state.core.settings


async def get_session(state: Annotated[AppState, Depends(get_state)]) -> AsyncIterator[AsyncSession]:
    """One session per request, closed (connection returned to the pool) at the end."""
    async with state.sessions() as session:
        yield session


_bearer = HTTPBearer(auto_error=False, description="Access token from POST /auth/login")


def _unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, "Not authenticated", headers={"WWW-Authenticate": "Bearer"}
    )


async def current_user_id(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> uuid.UUID:
    """The user id a valid bearer token names (signature, expiry, type), without reading the
    database: for the read-only endpoints that only filter the user's own rows by it (the list, the
    dashboard), so a cached dashboard answer costs no database round trip. 401 when the token is
    absent or invalid. (There is no account deletion: a valid token's user exists.)"""
    if credentials is None:
        raise _unauthorized()
    user_id: uuid.UUID | None = bearer_user_id(credentials.scheme, credentials.credentials, settings)
    if user_id is None:
        raise _unauthorized()
    return user_id


async def current_user(
    user_id: Annotated[uuid.UUID, Depends(current_user_id)],
    session: Annotated[AsyncSession, Depends(get_session)],
) -> User:
    """The user the bearer token names; 401 when absent, invalid, expired or the user is gone."""
    user = await session.get(User, user_id)
    if user is None:
        raise _unauthorized()
    return user


SessionDep = Annotated[AsyncSession, Depends(get_session)]
UserDep = Annotated[User, Depends(current_user)]
UserIdDep = Annotated[uuid.UUID, Depends(current_user_id)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StateDep = Annotated[AppState, Depends(get_state)]
