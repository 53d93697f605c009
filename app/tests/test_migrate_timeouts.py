"""Migrations run without the request timeouts: an index build on a big table may take longer than
DB_STATEMENT_TIMEOUT_MS allows any request."""

from __future__ import annotations

import os
import subprocess

from app_helpers import VENV_BIN
from live_servers import PostgresServer


def test_migrations_ignore_the_statement_and_command_timeouts(pg: PostgresServer) -> None:
    url = pg.create_database("migrations_timeouts")
    # 1 ms for every statement: any migration statement would be cancelled if these applied
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "LOG_LEVEL": "WARNING",
        "DB_STATEMENT_TIMEOUT_MS": "1",
        "DB_COMMAND_TIMEOUT": "0.001",
    }
    try:
        run = subprocess.run(
            [str(VENV_BIN / "invoice-migrate"), "upgrade"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
    finally:
        pg.drop_database("migrations_timeouts")
