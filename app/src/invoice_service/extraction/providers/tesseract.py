"""Offline extraction: Tesseract OCR (Debian's tesseract-ocr + tesseract-ocr-por), then the receipt
parser. Needs no key and no network, so the service does real work with no provider configured."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os

from PIL import Image, ImageOps, UnidentifiedImageError

from invoice_service.extraction.errors import ProviderUnavailable, UnreadableImage
from invoice_service.extraction.models import ExtractionResult
from invoice_service.extraction.receipt_parser import parse_receipt

#: Version of the preprocessing + parser; part of the cache key (with the languages).
PARSER_VERSION = "1"
# Photos are scaled so that the receipt's width is about this many pixels: Tesseract reads best at
# roughly 30 px per character line and a receipt is about 48 characters wide.
_TARGET_WIDTH = 1400
_MAX_PIXELS = 40_000_000


def _prepare(image: bytes) -> bytes:
    """Decode, orient (EXIF), greyscale, scale and stretch the contrast; PNG for tesseract's stdin."""
    try:
        with Image.open(io.BytesIO(image)) as opened:
            if opened.width * opened.height > _MAX_PIXELS:
                raise UnreadableImage(f"image too large ({opened.width}x{opened.height} pixels)")
            picture = ImageOps.exif_transpose(opened).convert("L")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"not a readable image: {exc}") from exc
    if picture.width < _TARGET_WIDTH * 0.75 or picture.width > _TARGET_WIDTH * 2:
        scale = _TARGET_WIDTH / picture.width
        picture = picture.resize(
            (_TARGET_WIDTH, max(1, round(picture.height * scale))), Image.Resampling.LANCZOS
        )
    picture = ImageOps.autocontrast(picture, cutoff=1)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


class TesseractProvider:
    """Runs `tesseract stdin stdout -l <languages> --psm 6` on the prepared photo and parses the text."""

    name = "ocr"

    def __init__(self, *, languages: str, command: str = "tesseract", max_concurrency: int = 2) -> None:
        self.languages = languages
        self.command = command
        self.cache_variant = f"tesseract-{languages}-parser{PARSER_VERSION}"
        self._slots = asyncio.Semaphore(max_concurrency)

    async def _ocr(self, png: bytes) -> str:
        # One OpenMP thread per process: parallel tesseract processes on 2 vCPUs are much faster that
        # way than processes competing with their own thread pools.
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        try:
            process = await asyncio.create_subprocess_exec(
                self.command, "stdin", "stdout", "-l", self.languages, "--psm", "6",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )  # fmt: skip
        except FileNotFoundError as exc:
            raise ProviderUnavailable(f"{self.command} not found (install tesseract-ocr)") from exc
        try:
            stdout, stderr = await process.communicate(png)
        finally:
            # Cancelled (the chain's timeout): do not leave the process running.
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process.returncode != 0:
            message = stderr.decode(errors="replace").strip().splitlines()
            raise ProviderUnavailable(
                f"tesseract exited {process.returncode}: {message[-1] if message else 'no message'}"
            )
        return stdout.decode(errors="replace")

    async def extract(self, image: bytes, content_type: str) -> ExtractionResult:
        """OCR one photo and parse it; UnreadableImage when nothing of a receipt is recognised."""
        async with self._slots:
            png = await asyncio.to_thread(_prepare, image)
            text = await self._ocr(png)
        result = parse_receipt(text, provider=self.name)
        if result.is_empty():
            raise UnreadableImage("no receipt text recognised")
        return result

    async def aclose(self) -> None:
        """Nothing to release (a process per photo)."""
