"""The offline provider end to end: receipts rendered with Pillow (DejaVu Sans Mono), read by the real
tesseract (por+eng), parsed into the ExtractionResult the LLM providers also produce."""

from __future__ import annotations

import difflib
import io
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from prometheus_client import REGISTRY
from receipt_images import RECEIPTS, SUPERMARKET, Receipt, render
from redis.asyncio import Redis

from invoice_service.extraction import ExtractionChain, ExtractionFailed, build_chain
from invoice_service.extraction.settings import ExtractionSettings

pytestmark = pytest.mark.usefixtures("tesseract_installed")

SettingsFactory = Callable[..., ExtractionSettings]


@asynccontextmanager
async def chain_of(
    settings: ExtractionSettings, redis: Redis | None = None
) -> AsyncIterator[ExtractionChain]:
    chain = build_chain(settings, redis)
    try:
        yield chain
    finally:
        await chain.aclose()


def matched_items(receipt: Receipt, got: list) -> int:
    """Items read right: same quantity and total, description at least 85 % similar."""
    matched = 0
    for expected in receipt.items:
        for item in got:
            similar = difflib.SequenceMatcher(None, expected.description, item.description).ratio() >= 0.85
            if similar and item.quantity == expected.quantity and item.total == expected.total:
                matched += 1
                break
    return matched


@pytest.mark.parametrize("photo", [False, True], ids=["scan", "photo"])
@pytest.mark.parametrize("name", sorted(RECEIPTS))
async def test_rendered_receipt_is_read(name: str, photo: bool, mono_font: Path) -> None:
    receipt = RECEIPTS[name]
    picture = render(receipt, mono_font, photo=photo, seed=7)
    # Out of the box: no key set, so the chain is the offline OCR provider alone.
    async with chain_of(ExtractionSettings()) as chain:
        result = await chain.extract(picture, "image/jpeg" if photo else "image/png")
    assert result.provider == "ocr"
    assert result.store_name == receipt.store_name
    assert result.store_tax_id == receipt.cnpj
    assert result.purchase_date == receipt.issued.date()
    assert result.total == receipt.total
    matched = matched_items(receipt, result.items)
    assert matched >= 0.8 * len(receipt.items), (
        f"only {matched}/{len(receipt.items)} items read: {result.items}"
    )
    assert len(result.items) <= len(receipt.items) + 1, "payment or total lines were taken for items"


async def test_ocr_is_the_fallback_and_its_result_is_cached(
    refused_url: str, fast_settings: SettingsFactory, mono_font: Path, redis_client: Redis
) -> None:
    settings = fast_settings(
        EXTRACTION_PROVIDERS="openai,ocr",
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=refused_url,
        LLM_TIMEOUT_SECONDS=30,
        PROMPT_VERSION="ocr-fallback-test",
    )
    picture = render(SUPERMARKET, mono_font, photo=True, seed=11)
    hits = REGISTRY.get_sample_value("extraction_cache_hits_total", {"provider": "ocr"}) or 0
    async with chain_of(settings, redis_client) as chain:
        first = await chain.extract(picture, "image/jpeg")
        second = await chain.extract(picture, "image/jpeg")  # openai still refused: OCR's cached answer
    assert (first.provider, first.cached, second.provider, second.cached) == ("ocr", False, "ocr", True)
    assert second.total == first.total == SUPERMARKET.total
    assert REGISTRY.get_sample_value("extraction_cache_hits_total", {"provider": "ocr"}) == hits + 1


def _png(color: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (800, 1000), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("picture", [_png(255), b"%PDF-1.4 not an image at all"], ids=["blank", "not-image"])
async def test_unreadable_photo_fails_without_opening_the_circuit(
    picture: bytes, fast_settings: SettingsFactory
) -> None:
    settings = fast_settings(EXTRACTION_PROVIDERS="ocr", CIRCUIT_FAILURE_THRESHOLD=1, LLM_TIMEOUT_SECONDS=30)
    async with chain_of(settings) as chain:
        for _ in range(2):
            with pytest.raises(ExtractionFailed) as caught:
                await chain.extract(picture, "image/png")
            assert [(f.provider, f.kind) for f in caught.value.failures] == [("ocr", "unreadable")]
            assert not caught.value.retryable, "retrying an unreadable photo later cannot help"
        assert chain.circuit_states() == {"ocr": "closed"}


async def test_missing_tesseract_is_reported_and_opens_the_circuit(fast_settings: SettingsFactory) -> None:
    settings = fast_settings(
        EXTRACTION_PROVIDERS="ocr", OCR_TESSERACT_CMD="/nonexistent/tesseract", CIRCUIT_FAILURE_THRESHOLD=1
    )
    async with chain_of(settings) as chain:
        with pytest.raises(ExtractionFailed, match="install tesseract-ocr") as caught:
            await chain.extract(_png(200), "image/png")
        assert caught.value.failures[0].kind == "unavailable"
        assert chain.circuit_states() == {"ocr": "open"}


async def test_slow_ocr_is_cut_by_the_timeout_and_killed(
    fast_settings: SettingsFactory, tmp_path: Path, captured_logs: list[dict[str, Any]]
) -> None:
    # A tesseract that hangs (as on a huge photo): the timeout must cancel the call and kill the process.
    hanging = tmp_path / "tesseract"
    hanging.write_text("#!/bin/sh\nexec sleep 30\n")
    hanging.chmod(0o755)
    settings = fast_settings(
        EXTRACTION_PROVIDERS="ocr",
        OCR_TESSERACT_CMD=str(hanging),
        LLM_TIMEOUT_SECONDS=0.5,
        LLM_RETRY_ATTEMPTS=2,
    )
    started = time.monotonic()
    async with chain_of(settings) as chain:
        with pytest.raises(ExtractionFailed) as caught:
            await chain.extract(_png(200), "image/png")
    assert time.monotonic() - started < 5
    assert caught.value.failures[0].kind == "timeout"
    (failed,) = [e for e in captured_logs if e["event"] == "extraction_provider_failed"]
    assert (failed["provider"], failed["attempts"]) == ("ocr", 2)
    children = subprocess.run(["pgrep", "-P", str(os.getpid()), "sleep"], capture_output=True, text=True)
    assert children.stdout == "", "the timed-out tesseract process was left running"
