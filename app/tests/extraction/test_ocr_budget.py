"""OCR within its budget on a 2-vCPU host: big photos decoded at reduced scale and capped at
OCR_MAX_PIXELS, decompression bombs refused before decoding, at most OCR_MAX_CONCURRENCY photos at once,
and the decoding threads and tesseract processes at OCR_NICENESS.

A fake `tesseract` (a shell script) stands in where what matters is what it is given or how it runs."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from invoice_service.extraction import ExtractionChain, ExtractionFailed, build_chain
from invoice_service.extraction.providers import tesseract as tesseract_module
from invoice_service.extraction.settings import ExtractionSettings

SettingsFactory = Callable[..., ExtractionSettings]


@asynccontextmanager
async def ocr_chain(settings: ExtractionSettings) -> AsyncIterator[ExtractionChain]:
    chain = build_chain(settings, None)
    try:
        yield chain
    finally:
        await chain.aclose()


def fake_tesseract(directory: Path, body: str) -> Path:
    """An executable `tesseract` running `body` (sh) after reading the whole image from stdin."""
    script = directory / "tesseract"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return script


def jpeg(width: int, height: int) -> bytes:
    """A white photo with a few dark lines of 'text', as a camera JPEG (RGB)."""
    picture = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(picture)
    for y in range(50, height - 50, max(60, height // 40)):
        draw.rectangle((width // 20, y, width - width // 20, y + 12), fill=(20, 20, 20))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


MEASURE = """
import json, resource, sys, time
from invoice_service.extraction.providers.tesseract import prepare_image
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
png = prepare_image(data, int(sys.argv[2]))
seconds = time.perf_counter() - started
grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
from PIL import Image
import io
size = Image.open(io.BytesIO(png)).size
print(json.dumps({"grown_mib": grown_kib / 1024, "seconds": seconds, "size": size}))
"""


def test_40_megapixel_jpeg_is_decoded_at_reduced_scale(tmp_path: Path) -> None:
    """Before: decoded at full size, +345 MiB of peak RSS (and 1-2.5 s) for one photo."""
    photo = tmp_path / "big.jpg"
    photo.write_bytes(jpeg(8000, 5000))
    # A fresh interpreter, so the peak RSS growth is this photo's alone.
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, str(photo), "12000000"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    measured = json.loads(run.stdout)
    width, height = measured["size"]
    assert (width, height) == (1400, 875)  # the receipt scaled to the OCR width, as before
    assert measured["grown_mib"] < 40, f"decoding took {measured['grown_mib']:.0f} MiB"


@pytest.mark.parametrize(
    ("picture", "fmt"),
    [((1400, 6000), "JPEG"), ((1200, 2400), "PNG")],
    ids=["long-jpeg", "png"],
)
async def test_image_handed_to_tesseract_fits_the_pixel_cap(
    picture: tuple[int, int], fmt: str, fast_settings: SettingsFactory, tmp_path: Path
) -> None:
    received = tmp_path / "received.png"
    command = fake_tesseract(tmp_path, f"cat > {received}")
    buffer = io.BytesIO()
    Image.new("RGB", picture, "white").save(buffer, format=fmt)
    settings = fast_settings(
        EXTRACTION_PROVIDERS="ocr",
        OCR_TESSERACT_CMD=str(command),
        OCR_MAX_PIXELS=2_000_000,
        LLM_TIMEOUT_SECONDS=30,
    )
    async with ocr_chain(settings) as chain:
        with pytest.raises(ExtractionFailed):  # the fake reads nothing: "no receipt text recognised"
            await chain.extract(buffer.getvalue(), f"image/{fmt.lower()}")
    with Image.open(received) as handed:
        width, height = handed.size
    assert width * height <= 2_000_000
    assert width * height > 1_900_000, "shrunk more than the cap asks"
    assert abs(width / height - picture[0] / picture[1]) < 0.01  # same proportions


async def test_decompression_bomb_is_refused_before_decoding(
    fast_settings: SettingsFactory, tmp_path: Path
) -> None:
    # 36 megapixels declared in a few kilobytes: PNG cannot be decoded at reduced scale.
    buffer = io.BytesIO()
    Image.new("1", (6000, 6000), 1).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 100_000
    called = tmp_path / "called"
    command = fake_tesseract(tmp_path, f"cat > /dev/null; touch {called}")
    settings = fast_settings(
        EXTRACTION_PROVIDERS="ocr", OCR_TESSERACT_CMD=str(command), LLM_TIMEOUT_SECONDS=30
    )
    async with ocr_chain(settings) as chain:
        with pytest.raises(ExtractionFailed) as caught:
            await chain.extract(buffer.getvalue(), "image/png")
    (failure,) = caught.value.failures
    assert (failure.kind, failure.retryable) == ("unreadable", False)
    assert "too large (6000x6000 pixels)" in failure.message
    assert not called.exists(), "tesseract was run on the bomb"


@pytest.mark.parametrize("concurrency", [None, 2], ids=["default", "two"])
async def test_concurrent_ocr_is_bounded_by_the_semaphore(
    concurrency: int | None, fast_settings: SettingsFactory, tmp_path: Path
) -> None:
    events = tmp_path / "events"
    command = fake_tesseract(
        tmp_path, f"cat > /dev/null; echo start >> {events}; sleep 0.3; echo end >> {events}"
    )
    overrides = {} if concurrency is None else {"OCR_MAX_CONCURRENCY": concurrency}
    settings = fast_settings(
        EXTRACTION_PROVIDERS="ocr", OCR_TESSERACT_CMD=str(command), LLM_TIMEOUT_SECONDS=30, **overrides
    )
    expected = concurrency or 1  # default: one photo at a time
    assert expected == settings.OCR_MAX_CONCURRENCY
    photos = [jpeg(800 + 10 * n, 1000) for n in range(4)]
    async with ocr_chain(settings) as chain:
        outcomes = await asyncio.gather(
            *(chain.extract(photo, "image/jpeg") for photo in photos), return_exceptions=True
        )
    assert all(isinstance(outcome, ExtractionFailed) for outcome in outcomes)  # the fake reads nothing
    running = peak = 0
    lines = events.read_text().split()
    for line in lines:
        running += 1 if line == "start" else -1
        peak = max(peak, running)
    assert lines.count("start") == 4
    assert peak == expected


async def test_ocr_runs_at_the_configured_niceness(
    fast_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    niceness_file = tmp_path / "nice"
    # Field 19 of /proc/<pid>/stat is the process's nice value.
    command = fake_tesseract(
        tmp_path, f'cat > /dev/null; set -- $(cat /proc/$$/stat); echo "${{19}}" > {niceness_file}'
    )
    threads: list[tuple[int, int]] = []
    prepare = tesseract_module.prepare_image

    def recording_prepare(image: bytes, max_pixels: int) -> bytes:
        native = threading.get_native_id()
        threads.append((native, os.getpriority(os.PRIO_PROCESS, native)))
        return prepare(image, max_pixels)

    monkeypatch.setattr(tesseract_module, "prepare_image", recording_prepare)
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    expected = max(own, 7)
    settings = fast_settings(
        EXTRACTION_PROVIDERS="ocr", OCR_TESSERACT_CMD=str(command), OCR_NICENESS=7, LLM_TIMEOUT_SECONDS=30
    )
    async with ocr_chain(settings) as chain:
        with pytest.raises(ExtractionFailed):
            await chain.extract(jpeg(1400, 2000), "image/jpeg")
    assert int(niceness_file.read_text()) == expected  # the tesseract process
    ((thread, thread_niceness),) = threads
    assert thread != threading.get_native_id()  # decoded off the event loop's thread...
    assert thread_niceness == expected  # ...on a thread at the OCR niceness
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own  # the loop's thread is not
