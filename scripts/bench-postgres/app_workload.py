"""The app's own database workload for `make bench-postgres`, written from the app's code.

Runs with the app's venv (app/.venv/bin/python: SQLAlchemy, Alembic and invoice_service) and writes,
into OUT:

- schema.sql: the app's Alembic migrations up to head, as SQL (Alembic's offline mode), the schema
  a production database gets from `invoice-migrate`;
- list.sql, search.sql, dashboard.sql: pgbench scripts (`pgbench -M prepared -f`) made of the exact
  statements the app sends, compiled by SQLAlchemy's asyncpg dialect (the driver the app uses) from
  invoice_service.listing (the list's page statements) and invoice_service.routes.dashboard (the
  dashboard's three grouped queries, captured by running its _compute against a recording session);
  one request a transaction, each for a user picked at random (pick_user);
- visit.sql: the three in one transaction, one user's visit: the app's workload as a whole.

What pgbench cannot bind as the app does: the user's id is a UUID and pgbench makes random integers
only, so `$n::UUID` becomes ('00000000-0000-4000-8000-' || lpad(:user_n::text, 12, '0'))::UUID, the
id app-data.sql gives user n (folded into a constant by the planner, like a bound value). The
values that are the same for every request (the status, the page size, the store pattern, the
dates) are written as literals, with the casts the app sends: several occur more than once in a
statement (GROUP BY repeats the SELECT's expression), and pgbench would bind each occurrence as a
parameter of its own. A page after the first continues from the last row of the first (pgbench's
\\aset keeps the last row: the 21st, where the app's cursor is the 20th; the page costs the same).

Usage: app/.venv/bin/python scripts/bench-postgres/app_workload.py OUT --users N --anchor YYYY-MM-DD
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from alembic import command
from invoice_service import listing
from invoice_service.migrate import alembic_config
from invoice_service.models import InvoiceStatus
from invoice_service.routes import dashboard
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.sql import Select

# The id app-data.sql gives user n, from pgbench's integer variable user_n.
USER_ID = "('00000000-0000-4000-8000-' || lpad(:user_n::text, 12, '0'))"
# The first page's last row (\aset page1_), the cursor of the next page.
CURSOR = {"after_at": ":page1_created_at", "after_id": ":page1_id"}
# What the list's clients ask for (as make bench-app does): 20 a page; the filtered list is the
# confirmed receipts of one store (by part of its name) bought in the last year.
PAGE_SIZE = 20
SEARCH_STORE = "carre"
TOP = 10
_DIALECT = asyncpg.dialect()
_PARAMETER = re.compile(r"\$(\d+)(?=::)")


def _literal(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        raise TypeError(f"no literal for {value!r}")
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, date):
        return f"'{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no literal for {value!r}")


def pgbench_sql(statement: Select[Any], values: dict[str, Any], end: str = ";") -> str:
    """The statement as asyncpg receives it, on one line, its parameters replaced: the user's id and
    the cursor by pgbench variables, every other value by a literal (keeping the app's cast)."""
    compiled = statement.compile(dialect=_DIALECT)
    names = compiled.positiontup or []
    bound = {**compiled.params, **values}
    text = " ".join(compiled.string.split())

    def replace(match: re.Match[str]) -> str:
        name = names[int(match.group(1)) - 1]
        if name == "user_id" or name.startswith("user_id_"):
            return USER_ID
        if name in CURSOR:
            return CURSOR[name]
        return _literal(bound[name])

    return _PARAMETER.sub(replace, text) + end


class _Recorder:
    """An AsyncSession stand-in that keeps the statements it is given and returns no rows."""

    def __init__(self) -> None:
        self.statements: list[Select[Any]] = []

    async def execute(self, statement: Select[Any]) -> _Recorder:
        self.statements.append(statement)
        return self

    def all(self) -> list[Any]:
        return []


def dashboard_statements() -> list[Select[Any]]:
    """The dashboard's queries for one user (no date filters, the default top 10)."""
    recorder = _Recorder()
    asyncio.run(dashboard._compute(recorder, uuid.uuid4(), None, None, TOP))  # type: ignore[arg-type]
    return recorder.statements


def pick_user(users: int) -> str:
    """pgbench: a user, each as likely as its share of the invoices (app-data.sql gives user n about
    users x ((n / users)^0.5 - ((n - 1) / users)^0.5) of them): who has more receipts looks more."""
    return f"\\set user_n 1 + int({users} * pow(random(0, 999999) / 1000000.0, 2))"


def walk(**filters: Any) -> list[str]:
    """A client reading the list: the first page, then the next one from its cursor."""
    nobody = uuid.UUID(int=0)  # placeholders: the statements bind the user and the cursor
    first, _, values = listing.list_statements(nobody, limit=PAGE_SIZE + 1, **filters)
    cursor = (datetime(2000, 1, 1, tzinfo=UTC), nobody)
    after, _, _ = listing.list_statements(nobody, limit=PAGE_SIZE + 1, after=cursor, **filters)
    return [pgbench_sql(first, values, " \\aset page1_"), pgbench_sql(after, values)]


def dashboard_session() -> list[str]:
    """The dashboard's session: a transaction around its three queries (SQLAlchemy's AsyncSession
    begins one at the first query and rolls it back when it closes)."""
    return ["BEGIN;", *(pgbench_sql(statement, {}) for statement in dashboard_statements()), "ROLLBACK;"]


def scripts(users: int, anchor: date) -> dict[str, list[str]]:
    """Each pgbench script: one user's request, or for `visit` one user's visit after confirming a
    receipt (which drops the dashboard's cache): the list, a search, the dashboard."""
    search = {
        "status_filter": InvoiceStatus.CONFIRMED,
        "store": SEARCH_STORE,
        "date_from": anchor - timedelta(days=365),
    }
    parts = {"list": walk(), "search": walk(**search), "dashboard": dashboard_session()}
    every = [line for part in parts.values() for line in part]
    return {name: [pick_user(users), *lines] for name, lines in (*parts.items(), ("visit", every))}


def schema_sql() -> str:
    """`invoice-migrate upgrade` (Alembic to head) as the SQL it runs, without a database."""
    output = io.StringIO()
    config = alembic_config("postgresql+asyncpg://bench@localhost/bench")
    config.output_buffer = output
    with contextlib.redirect_stdout(io.StringIO()):
        command.upgrade(config, "head", sql=True)
    return output.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--anchor", type=date.fromisoformat, required=True, help="the newest purchase date")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "schema.sql").write_text(schema_sql())
    for name, lines in scripts(args.users, args.anchor).items():
        text = "\n".join([f"-- {name}: written by {Path(__file__).name}", *lines, ""])
        (args.out / f"{name}.sql").write_text(text)


if __name__ == "__main__":
    main()
