"""JSON logs for the API and the worker (structlog), with secrets and image bytes redacted.

Every record is one JSON object on stdout: timestamp, level, logger, process (pid), event, the request
id bound by the request middleware (`request_id`) and the event's fields. Standard-library loggers
(uvicorn, alembic, sqlalchemy) go through the same renderer.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Field names whose values never reach a log line, whatever the caller passes.
_SECRET_KEY = re.compile(
    r"(passw(or)?d|secret|token|authorization|api[_-]?key|cookie|credential|^jwt|^image$|image_(bytes|data)"
    r"|^body$|^data$)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?i)bearer\s+[a-z0-9._~+/=-]+")
REDACTED = "[redacted]"


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Structlog processor: blank secret-looking fields, bytes and bearer tokens inside strings."""
    for key, value in list(event_dict.items()):
        if key in {"event", "timestamp", "level", "logger"}:
            continue
        if _SECRET_KEY.search(key) or isinstance(value, bytes | bytearray | memoryview):
            event_dict[key] = REDACTED
        elif isinstance(value, str) and _BEARER.search(value):
            event_dict[key] = _BEARER.sub("Bearer " + REDACTED, value)
    event = event_dict.get("event")
    if isinstance(event, str) and _BEARER.search(event):
        event_dict["event"] = _BEARER.sub("Bearer " + REDACTED, event)
    return event_dict


def add_process_id(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Structlog processor: the process id as `process` (structlog's CallsiteParameterAdder walks the
    stack on every line to find it: a fifth of the cost of an access-log line)."""
    event_dict["process"] = os.getpid()
    return event_dict


def configure_logging(level: str = "INFO") -> None:
    """Route structlog and the standard library to one JSON renderer on stdout. Idempotent."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_process_id,
        structlog.processors.StackInfoRenderer(),
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn installs its own handlers; make its loggers propagate to ours instead. Access logs are
    # written by the request middleware (with the request id), so uvicorn's are silenced.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
