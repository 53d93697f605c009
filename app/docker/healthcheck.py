"""The image's HEALTHCHECK: what "healthy" means depends on the command the container runs.

- The API (invoice_service.serve or uvicorn) is healthy when GET /health on $PORT answers 200 in
  time.
- The worker has no HTTP port: it is healthy while its process runs (the container stops when the
  process ends, and the restart policy takes over).
Standard library only: the image has no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_SECONDS = 4.0


def command_lines() -> list[str]:
    """The command line of every process in the container, arguments joined by spaces."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # the process ended while we looked
            continue
    return lines


def api_answers(port: str) -> tuple[bool, str]:
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return response.status == 200, f"{url} answered {response.status}"
    except urllib.error.HTTPError as error:
        return False, f"{url} answered {error.code}"
    except (OSError, urllib.error.URLError) as error:
        return False, f"{url} did not answer: {error}"


def main() -> int:
    processes = command_lines()
    if any("invoice_service.serve" in line or "uvicorn" in line for line in processes):
        healthy, message = api_answers(os.environ.get("PORT", "8000"))
    elif any("invoice_service.worker" in line or "invoice-worker" in line for line in processes):
        healthy, message = True, "worker process runs"
    else:
        healthy, message = False, "neither the API nor the worker runs in this container"
    print(message)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
