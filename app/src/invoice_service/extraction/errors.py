"""Errors of the extraction chain.

A provider raises a `ProviderError` subclass; the chain decides from the class whether to retry
(`retryable`: timeouts and connection errors only) and whether the failure says the provider is
unhealthy (`trips_circuit`). `ExtractionFailed` is what callers of the chain see.

What USERS see of a failure is only an `ErrorCategory` (`user_category`): a short, stable text stored in
jobs.last_error and invoices.extraction_error. Exception messages can carry SQL text and parameters,
file paths or a provider's response body; they go to the logs (with the job id), never to users.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from invoice_service.extraction.models import Usage


class ProviderError(Exception):
    """A provider could not produce a result."""

    #: Short machine-readable kind, used in logs and the `outcome` label of the metrics.
    kind = "error"
    #: Retried with backoff by the chain (transient network trouble).
    retryable = False
    #: Counts as a failure for the provider's circuit breaker.
    trips_circuit = True
    #: Tokens billed although the call failed (an LLM answered, but not usably); None when unknown.
    usage: Usage | None = None


class ProviderTimeout(ProviderError):
    """The attempt took longer than LLM_TIMEOUT_SECONDS."""

    kind = "timeout"
    retryable = True


class ProviderConnectionError(ProviderError):
    """The provider could not be reached (refused, reset, DNS, protocol error)."""

    kind = "connection_error"
    retryable = True


class ProviderHTTPError(ProviderError):
    """The provider answered with an HTTP error status.

    5xx, 401, 403, 404, 408 and 429 say the provider (or its configuration) is unhealthy and trip the
    circuit; other 4xx (400, 413, 415, 422) are about this one image and do not. None is retried: a
    5xx means the provider received the request (and may bill it); the next provider is tried instead.
    """

    kind = "http_error"
    _UNHEALTHY_4XX = frozenset({401, 403, 404, 408, 429})

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.trips_circuit = status_code >= 500 or status_code in self._UNHEALTHY_4XX


class ProviderResponseError(ProviderError):
    """The provider answered, but not with a receipt in the expected JSON shape."""

    kind = "invalid_response"


class UnreadableImage(ProviderError):
    """The image itself cannot be used (not decodable, or no receipt text found in it).

    The provider is healthy, so this does not trip the circuit.
    """

    kind = "unreadable"
    trips_circuit = False


class ProviderUnavailable(ProviderError):
    """The provider cannot run at all here (e.g. the tesseract binary is missing)."""

    kind = "unavailable"


class CircuitOpen(ProviderError):
    """The provider's circuit is open: it was skipped without being called."""

    kind = "circuit_open"
    trips_circuit = False


@dataclass(frozen=True)
class ProviderFailure:
    """Why one provider of the chain gave no result."""

    provider: str
    kind: str
    message: str
    retryable: bool


class ExtractionFailed(Exception):
    """Every provider of the chain failed; `failures` holds each provider's reason, in chain order."""

    def __init__(self, failures: list[ProviderFailure]) -> None:
        self.failures = failures
        detail = "; ".join(f"{f.provider}: {f.kind}: {f.message}" for f in failures) or "no provider"
        super().__init__(f"extraction failed: {detail}")

    @property
    def errors(self) -> dict[str, str]:
        """Provider name -> "kind: message"."""
        return {f.provider: f"{f.kind}: {f.message}" for f in self.failures}

    @property
    def retryable(self) -> bool:
        """Trying again later may succeed: some provider failed for a transient reason (timeout,
        connection, HTTP error, open circuit), not because the image is unreadable."""
        return any(f.retryable for f in self.failures)


class PhotoMissing(Exception):
    """A photo of the invoice is not where the upload stored it (file deleted, volume not mounted)."""


class ErrorCategory(enum.StrEnum):
    """The user-facing reason of a failed extraction attempt (or a note on a partial extraction).

    The values are what the API shows (jobs.last_error, invoices.extraction_error): keep them short and
    stable, and never put exception text in them.
    """

    #: Every provider answered about this photo and none could read it (unreadable image, the image
    #: refused with a 4xx): trying again cannot help, so the job is failed at once.
    UNREADABLE = "extraction failed: no provider could read the photo"
    #: Some provider failed for a transient reason (timeout, connection, 5xx, open circuit); the job is
    #: queued again.
    TEMPORARY = "extraction failed: temporary error, will retry"
    #: The same, on the job's last attempt: nothing more will be tried.
    UNAVAILABLE = "extraction failed: providers unavailable"
    #: A photo of the invoice is missing from the upload volume.
    PHOTO_MISSING = "photo missing"
    #: Anything else (database errors, bugs): the detail is in the worker's log under the job id.
    INTERNAL = "internal error"
    #: Not a failure: the invoice was extracted, but values that do not fit the database columns
    #: (e.g. a total of 10^11) were left empty for the user to fill in.
    VALUES_OUT_OF_RANGE = "extracted with problems: values out of range were left empty"


def user_category(exc: BaseException, *, final: bool) -> ErrorCategory:
    """The category users see for an attempt that raised `exc`; `final` says no attempt follows."""
    if isinstance(exc, ExtractionFailed):
        if not exc.retryable:
            return ErrorCategory.UNREADABLE
        return ErrorCategory.UNAVAILABLE if final else ErrorCategory.TEMPORARY
    if isinstance(exc, PhotoMissing):
        return ErrorCategory.PHOTO_MISSING
    return ErrorCategory.INTERNAL
