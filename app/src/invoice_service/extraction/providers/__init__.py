"""Extraction providers: OpenAI-compatible LLM endpoints and offline Tesseract OCR."""

from invoice_service.extraction.providers.base import Provider
from invoice_service.extraction.providers.openai_compatible import OpenAICompatibleProvider
from invoice_service.extraction.providers.tesseract import TesseractProvider

__all__ = ["OpenAICompatibleProvider", "Provider", "TesseractProvider"]
