"""What the chain needs from a provider."""

from __future__ import annotations

from typing import Protocol

from invoice_service.extraction.models import ExtractionResult


class Provider(Protocol):
    """One way of extracting a receipt. `extract` raises a ProviderError subclass on failure; timeouts
    and retries are applied by the chain, not by the provider."""

    #: Name in EXTRACTION_PROVIDERS, logs, metrics and circuit_states().
    name: str
    #: What, besides the name, makes this provider's answer differ (model, OCR languages): part of the
    #: cache key.
    cache_variant: str

    async def extract(self, image: bytes, content_type: str) -> ExtractionResult:
        """Extract one receipt photo."""
        ...

    async def aclose(self) -> None:
        """Release connections or other resources."""
        ...
