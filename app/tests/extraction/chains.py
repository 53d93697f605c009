"""Helpers the provider-chain tests share: a chain built from settings, closed afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from invoice_service.extraction import ExtractionChain, build_chain
from invoice_service.extraction.settings import ExtractionSettings

# The conftest's fast_settings fixture: ExtractionSettings with test-speed retries and circuits.
SettingsFactory = Callable[..., ExtractionSettings]


@asynccontextmanager
async def chain_of(settings: ExtractionSettings) -> AsyncIterator[ExtractionChain]:
    """The chain build_chain makes of ``settings`` (no Redis), closed when the block ends."""
    chain = build_chain(settings, None)
    try:
        yield chain
    finally:
        await chain.aclose()
