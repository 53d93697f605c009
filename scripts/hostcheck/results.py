"""One check's outcome and how it is printed."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Status(enum.Enum):
    """PASS and SKIP never fail a run; FAIL does."""

    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Result:
    """A check's name, its outcome and the one-line reason a reader acts on."""

    check: str
    status: Status
    reason: str


def passed(check: str, reason: str) -> Result:
    """A check that held."""
    return Result(check, Status.PASS, reason)


def failed(check: str, reason: str) -> Result:
    """A check that did not hold."""
    return Result(check, Status.FAIL, reason)


def skipped(check: str, reason: str) -> Result:
    """A check that could not be made here, and why."""
    return Result(check, Status.SKIP, reason)


def format_result(host: str, result: Result) -> str:
    """One line: ``PASS vps1 certificate: valid for api.example.org until ...``."""
    reason = " ".join(result.reason.split())
    return f"{result.status.value} {host} {result.check}: {reason}"


def summary(host: str, results: Iterable[Result]) -> str:
    """``vps1: 8 PASS, 1 FAIL, 2 SKIP``."""
    counts = {status: 0 for status in Status}
    for result in results:
        counts[result.status] += 1
    return f"{host}: " + ", ".join(f"{counts[status]} {status.value}" for status in Status)


def exit_code(results: Iterable[Result]) -> int:
    """1 when any check failed, else 0."""
    return int(any(result.status is Status.FAIL for result in results))
