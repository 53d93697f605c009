"""Receipt extraction: a chain of providers (OpenAI-compatible LLMs, offline Tesseract OCR) with
timeouts, retries, circuit breakers, fallback and a Redis cache.

    chain = build_chain(settings, redis)          # redis: redis.asyncio.Redis | None
    result = await chain.extract(image, "image/jpeg")
    chain.circuit_states()                        # {"openrouter": "closed", "ocr": "closed"}
    await chain.aclose()
"""

from invoice_service.extraction.chain import ExtractionChain, RetryPolicy, build_chain
from invoice_service.extraction.errors import (
    ErrorCategory,
    ExtractionFailed,
    PhotoMissing,
    ProviderFailure,
    user_category,
)
from invoice_service.extraction.models import ExtractedItem, ExtractionResult
from invoice_service.extraction.settings import ExtractionSettings

__all__ = [
    "ErrorCategory",
    "ExtractedItem",
    "ExtractionChain",
    "ExtractionFailed",
    "ExtractionResult",
    "ExtractionSettings",
    "PhotoMissing",
    "ProviderFailure",
    "RetryPolicy",
    "build_chain",
    "user_category",
]
