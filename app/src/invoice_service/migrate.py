"""`invoice-migrate`: Alembic upgrade/downgrade with the migrations shipped in the package."""

from __future__ import annotations

import argparse
from pathlib import Path

from alembic import command
from alembic.config import Config

from invoice_service.logging import configure_logging
from invoice_service.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic config that needs no alembic.ini and no working directory."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # '%' must be doubled for configparser interpolation (URL-encoded passwords).
    config.set_main_option("sqlalchemy.url", (database_url or Settings().DATABASE_URL).replace("%", "%%"))
    return config


def main(argv: list[str] | None = None) -> None:
    """Parse `invoice-migrate [upgrade|downgrade|current|history] [revision]` and run it."""
    parser = argparse.ArgumentParser(prog="invoice-migrate", description=__doc__)
    parser.add_argument(
        "action", choices=["upgrade", "downgrade", "current", "history"], nargs="?", default="upgrade"
    )
    parser.add_argument("revision", nargs="?", help="target (default: head for upgrade, -1 for downgrade)")
    args = parser.parse_args(argv)
    configure_logging(Settings().LOG_LEVEL)
    config = alembic_config()
    if args.action == "upgrade":
        command.upgrade(config, args.revision or "head")
    elif args.action == "downgrade":
        command.downgrade(config, args.revision or "-1")
    elif args.action == "current":
        command.current(config, verbose=True)
    else:
        command.history(config)


if __name__ == "__main__":
    main()
