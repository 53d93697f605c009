"""Offline extraction: Tesseract OCR (Debian's tesseract-ocr + tesseract-ocr-por), then the receipt
parser. Needs no key and no network, so the service does real work with no provider configured.

OCR is the one CPU- and memory-heavy thing the service does, on hosts of 2 vCPUs shared with the API
and PostgreSQL, so it runs within a budget: at most OCR_MAX_CONCURRENCY photos at once per process
(decoding and tesseract together), photos decoded to at most about OCR_MAX_PIXELS (a JPEG at reduced
scale by libjpeg itself), and the decoding threads and tesseract processes at OCR_NICENESS.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import structlog
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from invoice_service.extraction.errors import ProviderUnavailable, UnreadableImage
from invoice_service.extraction.models import ExtractionResult
from invoice_service.extraction.receipt_parser import parse_receipt

log = structlog.get_logger(__name__)

#: Version of the preprocessing + parser; part of the cache key (with the languages).
PARSER_VERSION = "1"
# Photos are scaled so that the receipt's width is about this many pixels: Tesseract reads best at
# roughly 30 px per character line and a receipt is about 48 characters wide.
_TARGET_WIDTH = 1400
#: A photo that would decode (after any reduced-scale JPEG decoding) to more than this many times
#: max_pixels is refused before decoding: PNG and WebP cannot be decoded at reduced scale, and a small
#: file can declare a huge picture (decompression bomb).
_DECODE_FACTOR = 2
#: EXIF orientations that swap width and height (the receipt's width is the stored height).
_SWAPPED = frozenset({5, 6, 7, 8})
DEFAULT_MAX_PIXELS = 12_000_000


def _needs_scaling(width: int) -> bool:
    """Widths tesseract reads well as they are are kept; others are scaled to _TARGET_WIDTH."""
    return width < _TARGET_WIDTH * 0.75 or width > _TARGET_WIDTH * 2


def _final_size(width: int, height: int, upright_width: int, max_pixels: int) -> tuple[int, int]:
    """The size (as stored, before any EXIF rotation) the picture is handed to tesseract at: the
    receipt _TARGET_WIDTH wide unless its width is already fine, then shrunk to max_pixels if needed."""
    factor = _TARGET_WIDTH / upright_width if _needs_scaling(upright_width) else 1.0
    if width * height * factor * factor > max_pixels:
        factor = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * factor)), max(1, math.floor(height * factor))


def prepare_image(image: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """Decode, orient (EXIF), greyscale, scale and stretch the contrast; PNG for tesseract's stdin.

    Bounded whatever the photo: the final size is decided from the header (the receipt _TARGET_WIDTH
    wide, at most max_pixels); a JPEG is then decoded by libjpeg at the largest of 1/2, 1/4, 1/8 scale
    that is still at least that size, in greyscale (`Image.draft`), so a 40-megapixel photo never
    exists at full size in memory; what would still decode to more than _DECODE_FACTOR x max_pixels
    (PNG and WebP decode at full size; decompression bombs) is refused (UnreadableImage) before
    decoding.
    """
    try:
        with Image.open(io.BytesIO(image)) as opened:
            width, height = opened.size
            # Only a JPEG's EXIF is read before decoding (a PNG's may follow the pixels).
            swapped = opened.format == "JPEG" and opened.getexif().get(ExifTags.Base.Orientation) in _SWAPPED
            final = _final_size(width, height, height if swapped else width, max_pixels)
            if opened.format == "JPEG":
                opened.draft("L", final)
            decoded = opened.size
            if decoded[0] * decoded[1] > _DECODE_FACTOR * max_pixels:
                raise UnreadableImage(f"image too large ({width}x{height} pixels)")
            if opened.format != "JPEG":
                opened.load()
                swapped = opened.getexif().get(ExifTags.Base.Orientation) in _SWAPPED
                final = _final_size(width, height, height if swapped else width, max_pixels)
            # Every step makes a new picture: `opened` is closed when the block ends.
            picture = opened.convert("L")
            if picture.size != final:
                picture = picture.resize(final, Image.Resampling.LANCZOS)
            picture = ImageOps.exif_transpose(picture)
            picture = ImageOps.autocontrast(picture, cutoff=1)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"not a readable image: {exc}") from exc
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def renice(pid: int, niceness: int) -> None:
    """Raise the niceness of process `pid` (on Linux, of thread `pid`) to `niceness`; never lowered
    (that needs privileges), and best effort: a process that already exited is left alone."""
    if niceness <= 0:
        return
    try:
        if os.getpriority(os.PRIO_PROCESS, pid) < niceness:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
    except OSError as exc:
        log.warning("ocr_renice_failed", pid=pid, niceness=niceness, error=str(exc))


class TesseractProvider:
    """Runs `tesseract stdin stdout -l <languages> --psm 6` on the prepared photo and parses the text.

    At most `max_concurrency` photos are prepared and read at once (a semaphore around both); the
    preparation runs on this provider's own threads and tesseract in its own processes, both at
    `niceness`; photos are decoded to at most about `max_pixels` (see `prepare_image`).
    """

    name = "ocr"

    def __init__(
        self,
        *,
        languages: str,
        command: str = "tesseract",
        max_concurrency: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        niceness: int = 10,
    ) -> None:
        self.languages = languages
        self.command = command
        self.max_pixels = max_pixels
        self.niceness = niceness
        self.cache_variant = f"tesseract-{languages}-parser{PARSER_VERSION}"
        self._slots = asyncio.Semaphore(max_concurrency)
        # Own threads (created on first use), so the niceness given to them touches nothing else.
        self._threads = ThreadPoolExecutor(
            max_workers=max_concurrency,
            thread_name_prefix="ocr-prepare",
            initializer=self._nice_thread,
        )

    def _nice_thread(self) -> None:
        renice(threading.get_native_id(), self.niceness)

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
        # Before tesseract gets its input: it only reads stdin until then.
        renice(process.pid, self.niceness)
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
            loop = asyncio.get_running_loop()
            png = await loop.run_in_executor(
                self._threads, functools.partial(prepare_image, image, self.max_pixels)
            )
            text = await self._ocr(png)
        result = parse_receipt(text, provider=self.name)
        if result.is_empty():
            raise UnreadableImage("no receipt text recognised")
        return result

    async def aclose(self) -> None:
        """Let the preparation threads go (a process per photo: nothing else to release)."""
        self._threads.shutdown(wait=False, cancel_futures=True)
