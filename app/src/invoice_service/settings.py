"""The one settings class: every variable the API and the worker read, with its default.

Values come from environment variables of the same name (no prefix) or a `.env` file in the working
directory. The extraction fields (providers, keys, models, LLM_TIMEOUT_SECONDS, LLM_CACHE_TTL, circuit
breaker, LLM_PRICES) are declared in `invoice_service.extraction.settings.ExtractionSettings`, which this
class inherits, so one class configures the whole service.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from invoice_service.extraction.settings import ExtractionSettings

DEFAULT_JWT_SECRET = "change-me-in-production-0123456789abcdef"


class Settings(ExtractionSettings):
    """Configuration of the invoice service (API and worker)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=True)

    # --- Core -----------------------------------------------------------------------------------
    DEBUG: bool = Field(
        default=False,
        description="Development mode: NullPool (a new database connection for every session, none "
        "kept open). Never in production: each request then pays a PostgreSQL connection setup.",
    )
    DATABASE_URL: str = Field(
        default="postgresql+asyncpg://invoice:invoice@127.0.0.1:5432/invoice",
        description="SQLAlchemy URL of PostgreSQL; the asyncpg driver is used whatever the scheme says.",
    )
    REDIS_URL: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis for the extraction cache, rate-limit counters and dashboard cache. Optional: "
        "when unreachable the service keeps serving (in-memory rate limits, no cache).",
    )
    REDIS_TIMEOUT_SECONDS: float = Field(
        default=1.0, gt=0, description="Connect and read timeout of every Redis call."
    )
    JWT_SECRET: SecretStr = Field(
        default=SecretStr(DEFAULT_JWT_SECRET),
        min_length=32,
        description="HMAC key signing access tokens (HS256), 32+ characters. The default is public: the "
        "API refuses to start with it unless DEBUG is on; set a random value.",
    )
    JWT_EXPIRE_MINUTES: int = Field(default=60, gt=0, description="Lifetime of an access token.")

    # --- Database pool --------------------------------------------------------------------------
    DB_POOL_SIZE: int = Field(
        default=10, ge=1, description="Connections kept open per process (2 API workers x 10 = 20)."
    )
    DB_MAX_OVERFLOW: int = Field(
        default=5, ge=0, description="Extra connections per process under load, closed when returned."
    )
    DB_POOL_RECYCLE: int = Field(
        default=1800, description="Seconds after which a pooled connection is replaced (-1: never)."
    )
    DB_POOL_TIMEOUT: float = Field(
        default=30, gt=0, description="Seconds a request waits for a free pooled connection."
    )
    DB_POOL_PRE_PING: bool = Field(
        default=True,
        description="Test a pooled connection on checkout when it has been idle DB_POOL_PING_IDLE_SECONDS "
        "or more, replacing it (and every older one) when the server closed it.",
    )
    DB_POOL_PING_IDLE_SECONDS: float = Field(
        default=5,
        ge=0,
        description="Connections used within this many seconds skip the checkout test (0: test every "
        "checkout). A test costs a transaction's three round trips; a connection in use moments ago "
        "is alive, while one idle through a PostgreSQL restart or an idle timeout is caught.",
    )
    DB_ECHO: bool = Field(default=False, description="Log every SQL statement (never in production).")
    DB_CONNECT_TIMEOUT: float = Field(
        default=10,
        gt=0,
        description="Seconds to establish a PostgreSQL connection (TCP, TLS, authentication) before "
        "giving up (asyncpg's connect timeout).",
    )
    DB_COMMAND_TIMEOUT: float = Field(
        default=35,
        gt=0,
        description="Client-side limit, in seconds, of one statement (asyncpg's command_timeout): the "
        "backstop for a server that stopped answering. A little above DB_STATEMENT_TIMEOUT_MS, so a "
        "slow query is normally cancelled by PostgreSQL first and the connection stays usable.",
    )
    DB_STATEMENT_TIMEOUT_MS: int = Field(
        default=30000,
        ge=0,
        description="PostgreSQL's statement_timeout of every connection of the pool (milliseconds; 0: "
        "none): a longer statement is cancelled by the server (QueryCanceled).",
    )

    # --- HTTP server ----------------------------------------------------------------------------
    HOST: str = Field(default="0.0.0.0", description="Address `invoice-api` binds to.")
    PORT: int = Field(default=8000, ge=1, le=65535, description="Port `invoice-api` listens on.")
    UVICORN_WORKERS: int = Field(default=2, ge=1, description="API processes (one per vCPU).")
    GRACEFUL_SHUTDOWN_SECONDS: int = Field(
        default=30, ge=0, description="On SIGTERM, how long in-flight requests may take to finish."
    )
    TRUSTED_PROXY_NETWORKS: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDRs (comma-separated) of reverse proxies whose X-Forwarded-For is believed, e.g. "
        "the proxy's Docker network. Empty: the direct peer is the client, X-Forwarded-For is ignored.",
    )
    CORS_ORIGINS: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins (comma-separated) allowed by CORS; empty: no CORS."
    )

    # --- Uploads --------------------------------------------------------------------------------
    UPLOAD_DIR: Path = Field(
        default=Path("/var/lib/invoice-service/uploads"),
        description="Where receipt photos are stored (a volume shared by the API and the worker).",
    )
    MAX_BODY_BYTES: int = Field(
        default=256 * 1024,
        gt=0,
        description="Largest request body of every route but the upload (JSON): counted as it streams; "
        "larger: 413 before the rest is read.",
    )
    MAX_UPLOAD_BYTES: int = Field(
        default=10 * 1024 * 1024, gt=0, description="Largest accepted photo (bytes); larger: 413."
    )
    MAX_UPLOAD_FILES: int = Field(
        default=5, ge=1, description="Most photos in one upload (one receipt); more: 422."
    )
    UPLOAD_DELETE_GRACE_HOURS: float = Field(
        default=48.0,
        ge=0,
        description="A deleted invoice's photos wait this long under UPLOAD_DIR/.deleted/ before the "
        "worker removes them: the next nightly backup still holds them, so a database restored to "
        "before the deletion finds its photos. 0: removed at once.",
    )
    MAX_USER_STORAGE_BYTES: int = Field(
        default=500 * 1024 * 1024,
        ge=0,
        description="Photos one user may keep stored (bytes, summed over their invoices); an upload "
        "that would pass it: 413, nothing stored. 0: no quota.",
    )

    # --- Rate limits ----------------------------------------------------------------------------
    RATE_LIMIT_ENABLED: bool = Field(default=True, description="Apply the per-client rate limits below.")
    RATE_LIMIT_DEFAULT: str = Field(default="100/minute", description="Every endpoint not listed below.")
    RATE_LIMIT_REGISTER: str = Field(default="5/hour", description="POST /auth/register.")
    RATE_LIMIT_LOGIN: str = Field(default="10/minute", description="POST /auth/login.")
    RATE_LIMIT_UPLOAD: str = Field(default="30/hour", description="POST /invoices/upload.")
    RATE_LIMIT_CONFIRM: str = Field(default="60/hour", description="POST /invoices/{id}/confirm.")
    RATE_LIMIT_LOGIN_ACCOUNT: str = Field(
        default="20/hour",
        description="Failed logins per account (e-mail address), from any number of addresses; beyond "
        "it the account's logins get 429 until the window passes.",
    )

    # --- Dashboard cache ------------------------------------------------------------------------
    DASHBOARD_CACHE_TTL: int = Field(
        default=60,
        ge=0,
        description="Seconds a user's dashboard answer stays in Redis (0: no cache). Any change to the "
        "user's invoices invalidates it at once.",
    )

    # --- Jobs and worker ------------------------------------------------------------------------
    JOB_MAX_ATTEMPTS: int = Field(
        default=3, ge=1, description="Extraction attempts before a job (and its invoice) is failed."
    )
    JOB_LEASE_SECONDS: float = Field(
        default=30,
        gt=0,
        description="A claimed job is locked this long and the worker renews the lease every third of "
        "it; a job whose lease expired (worker killed) is taken again by another worker.",
    )
    JOB_RETRY_BACKOFF_SECONDS: float = Field(
        default=5, ge=0, description="Delay before retrying a failed attempt, doubled on each attempt."
    )
    WORKER_CONCURRENCY: int = Field(default=2, ge=1, description="Jobs one worker process runs at once.")
    WORKER_POLL_SECONDS: float = Field(default=1.0, gt=0, description="Idle worker's polling interval.")
    WORKER_METRICS_PORT: int = Field(
        default=9101,
        ge=0,
        le=65535,
        description="Port where the worker serves Prometheus metrics (jobs, extraction providers, cache "
        "hit/miss) on WORKER_METRICS_HOST; 0: none.",
    )
    WORKER_METRICS_HOST: str = Field(default="0.0.0.0", description="Address of the worker's metrics port.")

    # --- Observability --------------------------------------------------------------------------
    LOG_LEVEL: str = Field(default="INFO", description="Minimum level of the JSON logs.")
    RELEASE: str = Field(
        default="",
        description="The deployment's release name (the toolkit sets it per release), reported by "
        "/health/ready so a probe can tell which release answered during a release swap.",
    )
    DOCS_ENABLED: bool = Field(
        default=False,
        description="Serve /docs, /redoc and /openapi.json (on with DEBUG). Off in production: the "
        "schema hands a scanner every route and parameter.",
    )
    METRICS_NETWORKS: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="CIDRs (comma-separated) whose direct requests may read /metrics; from anywhere "
        "else, or through a proxy (X-Forwarded-For), /metrics answers 404.",
    )
    PROMETHEUS_MULTIPROC_DIR: Path | None = Field(
        default=None,
        description="Directory shared by the API worker processes for Prometheus multiprocess metrics. "
        "`invoice-api` creates a private one when UVICORN_WORKERS > 1 and this is unset.",
    )

    @field_validator("TRUSTED_PROXY_NETWORKS", "CORS_ORIGINS", "METRICS_NETWORKS", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("TRUSTED_PROXY_NETWORKS", "METRICS_NETWORKS")
    @classmethod
    def _canonical_networks(cls, value: list[str], info: ValidationInfo) -> list[str]:
        """Each network in canonical form ("172.30.0.1/16" -> "172.30.0.0/16", "10.0.0.5" ->
        "10.0.0.5/32"): uvicorn's proxy-header middleware takes a CIDR only in that form, and would
        otherwise compare it as a host name and trust nothing."""
        canonical = []
        for network in value:
            try:
                canonical.append(str(ipaddress.ip_network(network, strict=False)))
            except ValueError as exc:
                raise ValueError(f"{info.field_name}: {network!r} is not a CIDR or address") from exc
        return canonical

    @field_validator("DATABASE_URL")
    @classmethod
    def _asyncpg_driver(cls, value: str) -> str:
        for prefix in ("postgresql://", "postgres://", "postgresql+psycopg://", "postgresql+psycopg2://"):
            if value.startswith(prefix):
                return "postgresql+asyncpg://" + value[len(prefix) :]
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
