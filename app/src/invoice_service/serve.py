"""`invoice-api`: uvicorn with the service's settings (workers, graceful shutdown, proxy handling).

Equivalent to
    uvicorn --factory invoice_service.main:create_app --host $HOST --port $PORT \
        --workers $UVICORN_WORKERS --timeout-graceful-shutdown $GRACEFUL_SHUTDOWN_SECONDS \
        --no-proxy-headers --no-access-log
X-Forwarded-For is handled inside the app (TRUSTED_PROXY_NETWORKS), so uvicorn's own proxy-header
handling is off: one place decides which peers are trusted. With more than one worker and no
PROMETHEUS_MULTIPROC_DIR, a fresh private directory is created so /metrics aggregates all workers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import uvicorn

from invoice_service.logging import configure_logging
from invoice_service.settings import Settings


def prepare_multiprocess_dir(settings: Settings) -> None:
    """Point prometheus_client at an empty directory shared by the worker processes (before they
    start: the variable is inherited). Stale files from a previous run are removed."""
    directory = settings.PROMETHEUS_MULTIPROC_DIR
    if directory is None and settings.UVICORN_WORKERS <= 1:
        return
    path = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="invoice-metrics-"))
    if path.exists():
        for child in path.iterdir():
            if child.suffix == ".db":
                child.unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def main() -> None:
    """Console entry point."""
    settings = Settings()
    configure_logging(settings.LOG_LEVEL)
    prepare_multiprocess_dir(settings)
    try:
        uvicorn.run(
            "invoice_service.main:create_app",
            factory=True,
            host=settings.HOST,
            port=settings.PORT,
            workers=settings.UVICORN_WORKERS,
            timeout_graceful_shutdown=settings.GRACEFUL_SHUTDOWN_SECONDS,
            proxy_headers=False,
            access_log=False,
            log_config=None,
            server_header=False,
        )
    finally:
        if settings.PROMETHEUS_MULTIPROC_DIR is None and "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main()
