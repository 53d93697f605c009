"""Accounts: register, login (JWT), me."""

from __future__ import annotations

import uuid

import structlog
from fastapi import APIRouter, HTTPException, status
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError

from invoice_service.deps import SessionDep, StateDep, UserDep
from invoice_service.models import User
from invoice_service.schemas import Credentials, RegistrationAccepted, TokenOut, UserOut
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


@router.post("/register", status_code=status.HTTP_202_ACCEPTED, response_model=RegistrationAccepted)
async def register(body: Credentials, session: SessionDep) -> RegistrationAccepted:
    """Create an account (rate limit: RATE_LIMIT_REGISTER per client). The answer is the same 202
    whether the address was free or already had an account (same work: the password is hashed
    either way), so registering does not tell anyone which addresses have accounts; with an existing
    address the account is left as it was and its owner's password still applies."""
    user = User(
        id=uuid.uuid4(), email=body.email.lower(), password_hash=await hash_password_off_loop(body.password)
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        log.info("registration_of_existing_address")
        return RegistrationAccepted()
    log.info("user_registered", user_id=str(user.id))
    return RegistrationAccepted()


@router.post(
    "/login",
    response_model=TokenOut,
    responses={
        401: {"description": "Wrong credentials"},
        429: {"description": "Too many logins from this client, or failed logins to this account"},
    },
)
async def login(body: Credentials, session: SessionDep, state: StateDep) -> TokenOut:
    """Exchange e-mail and password for a bearer token (rate limits: RATE_LIMIT_LOGIN per client,
    RATE_LIMIT_LOGIN_ACCOUNT failed logins per account from any number of clients)."""
    retry_after = await state.limits.account_retry_after(body.email)
    if retry_after is not None:
        log.info("login_account_limited", retry_after=retry_after)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"Too many failed logins to this account; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
    user = (await session.execute(user_by_email(body.email))).scalar_one_or_none()
    # Verify against a dummy hash for unknown e-mails: same cost, no account enumeration by timing.
    valid = await verify_password_off_loop(user.password_hash if user else DUMMY_HASH, body.password)
    if user is None or not valid:
        await state.limits.account_failed(body.email)
        log.info("login_failed")
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "Wrong e-mail or password", headers={"WWW-Authenticate": "Bearer"}
        )
    token, lifetime = create_access_token(user.id, state.settings)
    log.info("login_succeeded", user_id=str(user.id))
    return TokenOut(access_token=token, expires_in=lifetime)


@router.get("/me", response_model=UserOut, responses={401: {"description": "Not authenticated"}})
async def me(user: UserDep) -> User:
    """The authenticated user."""
    return user
