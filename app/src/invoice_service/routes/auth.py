"""Accounts: register, login (JWT), me."""

from __future__ import annotations

import uuid

import structlog
from fastapi import APIRouter, HTTPException, status
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError

from invoice_service.deps import SessionDep, SettingsDep, UserDep
from invoice_service.models import User
from invoice_service.schemas import Credentials, TokenOut, UserOut
from invoice_service.security import (
    DUMMY_HASH,
    create_access_token,
    hash_password_off_loop,
    verify_password_off_loop,
)

router = APIRouter(prefix="/auth", tags=["auth"])
log = structlog.get_logger(__name__)


def user_by_email(email: str) -> Select[tuple[User]]:
    """The account of an address. Addresses are stored lower-cased (register; the users_email_lower
    check), so this is an equality on the column itself, which its unique index serves."""
    return select(User).where(User.email == email.lower())


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses={409: {"description": "E-mail already registered"}},
)
async def register(body: Credentials, session: SessionDep) -> User:
    """Create an account (rate limit: RATE_LIMIT_REGISTER per client)."""
    user = User(
        id=uuid.uuid4(), email=body.email.lower(), password_hash=await hash_password_off_loop(body.password)
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, "E-mail already registered") from exc
    await session.refresh(user)
    log.info("user_registered", user_id=str(user.id))
    return user


@router.post("/login", response_model=TokenOut, responses={401: {"description": "Wrong credentials"}})
async def login(body: Credentials, session: SessionDep, settings: SettingsDep) -> TokenOut:
    """Exchange e-mail and password for a bearer token (rate limit: RATE_LIMIT_LOGIN per client)."""
    user = (await session.execute(user_by_email(body.email))).scalar_one_or_none()
    # Verify against a dummy hash for unknown e-mails: same cost, no account enumeration by timing.
    valid = await verify_password_off_loop(user.password_hash if user else DUMMY_HASH, body.password)
    if user is None or not valid:
        log.info("login_failed")
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "Wrong e-mail or password", headers={"WWW-Authenticate": "Bearer"}
        )
    token, lifetime = create_access_token(user.id, settings)
    log.info("login_succeeded", user_id=str(user.id))
    return TokenOut(access_token=token, expires_in=lifetime)


@router.get("/me", response_model=UserOut, responses={401: {"description": "Not authenticated"}})
async def me(user: UserDep) -> User:
    """The authenticated user."""
    return user
