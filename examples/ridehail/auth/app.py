"""auth: sign-up, login, JWKS. Tokens are ES256 JWTs the gateway verifies (see keys.py)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import Depends
from pydantic import AfterValidator, BaseModel, Field, SecretStr
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from auth.keys import KeyRing, RotationRules
from auth.passwords import MAX_LENGTH, Passwords, WeakPassword
from auth.store import SqlKeyStore, metadata, users
from auth.text import JOINERS, refuse_hidden
from auth.tokens import Role, TokenIssuer
from contracts.sql import insert_new
from contracts.started import Started
from corral.sdk import Database, DbSession, Problem, Service, ServiceSettings


class Settings(ServiceSettings):
    token_issuer: str = "ridehail-auth"
    token_audience: str = "ridehail"
    token_ttl_s: int = Field(default=900, ge=30, le=3600)
    rotate_every_s: int = Field(default=86_400, ge=60)
    jwks_cache_s: int = Field(default=30, ge=0)
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_kib: int = Field(default=19_456, ge=8)
    admin_email: str | None = None
    admin_password: SecretStr | None = None


svc = Service("auth", settings=Settings, metadata=metadata, title="ridehail auth")

RING_REFRESH_S = 10.0
"""How often a replica reloads the key ring (another one may have rotated it)."""


@dataclass(frozen=True, slots=True)
class Auth:
    """What auth makes as it starts: the key ring (from its database), the token issuer
    and the password hasher (from its settings)."""

    ring: KeyRing
    issuer: TokenIssuer
    passwords: Passwords


made = Started[Auth]("auth's key ring and password hasher")
AuthDep = Annotated[Auth, Depends(made.dependency)]


@svc.on_startup
async def _start() -> None:
    settings = svc.settings
    rules = RotationRules(
        token_ttl=timedelta(seconds=settings.token_ttl_s),
        verifier_cache=timedelta(seconds=settings.jwks_cache_s),
        rotate_every=timedelta(seconds=settings.rotate_every_s),
    )
    keys = KeyRing(SqlKeyStore(svc.db), rules)
    await keys.ensure(datetime.now(UTC))
    hasher = Passwords(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib)
    made.set(
        Auth(
            ring=keys,
            issuer=TokenIssuer(
                keys,
                issuer=settings.token_issuer,
                audience=settings.token_audience,
                ttl=rules.token_ttl,
            ),
            passwords=hasher,
        )
    )
    if settings.admin_email and settings.admin_password:
        secret = settings.admin_password.get_secret_value()
        await ensure_admin(svc.db, hasher, settings.admin_email, secret)


@svc.every(lambda: RING_REFRESH_S, name="key ring refresh")
async def _refresh_ring() -> None:
    """Reload the ring and rotate it when due; a failed round keeps the keys we have."""
    await made().ring.ensure(datetime.now(UTC))


async def ensure_admin(db: Database, hasher: Passwords, email: str, password: str) -> bool:
    """Create the operator's admin account unless it exists; True when this call made it.

    Every replica runs this as it starts, all at once under ``corral up``. The insert is
    ``ON CONFLICT DO NOTHING``: "select, then insert" lets two replicas both see no admin
    on PostgreSQL, and the second one's duplicate email failed its startup."""
    async with db.sessionmaker() as session:
        if await session.scalar(select(users.c.id).where(users.c.email == email)) is not None:
            return False  # the usual case: no Argon2 hash at every start
    password_hash = await asyncio.to_thread(hasher.hash, password)
    async with db.transaction() as session:
        made_now = await session.scalar(
            insert_new(session, users)
            .values(
                id=str(uuid.uuid4()),
                email=email,
                name="admin",
                role="admin",
                password_hash=password_hash,
                created_at=datetime.now(UTC),
            )
            .returning(users.c.id)
        )
        return made_now is not None


Password = Annotated[str, Field(min_length=1, max_length=MAX_LENGTH)]
EmailStr = Annotated[
    str,
    Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
    AfterValidator(refuse_hidden()),
]
"""Shape only: an address is proven by a confirmation mail, not by a regular expression;
but nothing invisible (auth/text.py)."""
Name = Annotated[
    str, Field(min_length=1, max_length=100), AfterValidator(refuse_hidden(allow=JOINERS))
]


class Signup(BaseModel):
    email: EmailStr
    password: Password
    name: Name
    role: Literal["rider", "driver"]


class Account(BaseModel):
    id: str
    email: str
    role: str


class Login(BaseModel):
    email: EmailStr
    password: Password


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


@svc.post("/signup", status_code=201)
async def signup(body: Signup, session: DbSession, auth: AuthDep) -> Account:
    """Create a rider or driver account (admins are created by the operator)."""
    try:
        password_hash = await asyncio.to_thread(auth.passwords.hash, body.password)
    except WeakPassword as exc:
        raise Problem(422, "Weak password", detail=str(exc)) from exc
    user_id = str(uuid.uuid4())
    email = body.email.lower()
    if await session.scalar(select(users.c.id).where(users.c.email == email)) is not None:
        raise Problem(409, "Email taken", detail=f"an account for {email} exists")
    try:
        await session.execute(
            insert(users).values(
                id=user_id,
                email=email,
                name=body.name,
                role=body.role,
                password_hash=password_hash,
                created_at=datetime.now(UTC),
            )
        )
        await session.flush()
    except IntegrityError as exc:
        raise Problem(409, "Email taken", detail=f"an account for {email} exists") from exc
    return Account(id=user_id, email=email, role=body.role)


@svc.post("/login")
async def login(body: Login, session: DbSession, auth: AuthDep) -> TokenResponse:
    """Exchange email and password for a short-lived access token."""
    row = (await session.execute(select(users).where(users.c.email == body.email.lower()))).first()
    ok = await asyncio.to_thread(
        auth.passwords.verify, row.password_hash if row else None, body.password
    )
    if row is None or not ok:
        raise Problem(401, "Invalid credentials", detail="wrong email or password")
    issued = auth.issuer.issue(
        subject=row.id, role=Role(row.role), email=row.email, now=datetime.now(UTC)
    )
    return TokenResponse(access_token=issued.token, expires_in=issued.expires_in)


@svc.get("/.well-known/jwks.json")
async def jwks(auth: AuthDep) -> dict[str, object]:
    """The public keys: the signing one, the next one and the previous one."""
    return auth.ring.jwks()
