"""Receipt photo intake: size limit, image type from the file's first bytes, storage under UPLOAD_DIR.

The Content-Type a client sends is not trusted: the type comes from the magic bytes, and a file that is
not JPEG, PNG or WebP is refused (415) whatever its header says.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from fastapi import HTTPException, UploadFile, status

CHUNK = 256 * 1024
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
# Deleted invoices' photos wait here (UPLOAD_DIR/.deleted/<UTC time>-<user>-<invoice>/) until
# UPLOAD_DELETE_GRACE_HOURS have passed: same file system, so moving them is one rename.
DELETED_DIR = ".deleted"
DELETED_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


def sniff_image_type(head: bytes) -> str | None:
    """The image media type from a file's first 12 bytes, or None when it is no supported image."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True)
class ReadPhoto:
    """A validated photo held in memory before it is written."""

    data: bytes
    content_type: str
    filename: str

    def describe(self, path: Path) -> dict[str, Any]:
        """The record kept in invoices.images (no bytes)."""
        return {
            "path": str(path),
            "content_type": self.content_type,
            "size": len(self.data),
            "sha256": hashlib.sha256(self.data).hexdigest(),
            "filename": self.filename[:255],
        }


async def read_photo(upload: UploadFile, max_bytes: int) -> ReadPhoto:
    """Read one upload, refusing it as soon as it exceeds max_bytes (413) or is no image (415)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"{upload.filename or 'file'} is larger than {max_bytes} bytes",
            )
        chunks.append(chunk)
    data = b"".join(chunks)
    content_type = sniff_image_type(data[:12])
    if content_type is None:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"{upload.filename or 'file'} is not a JPEG, PNG or WebP image",
        )
    return ReadPhoto(data=data, content_type=content_type, filename=upload.filename or "photo")


async def store_photos(
    upload_dir: Path, user_id: uuid.UUID, invoice_id: uuid.UUID, photos: list[ReadPhoto]
) -> list[dict[str, Any]]:
    """Write the photos under UPLOAD_DIR/<user>/<invoice>/ (atomically: temp file, then rename)."""
    directory = upload_dir / str(user_id) / str(invoice_id)
    await anyio.Path(directory).mkdir(parents=True, exist_ok=True)
    records = []
    for index, photo in enumerate(photos):
        path = directory / f"{index}.{EXTENSIONS[photo.content_type]}"
        tmp = path.with_suffix(path.suffix + ".part")
        await anyio.Path(tmp).write_bytes(photo.data)
        await anyio.to_thread.run_sync(os.replace, tmp, path)
        records.append(photo.describe(path))
    return records


async def delete_photos(
    upload_dir: Path,
    user_id: uuid.UUID,
    invoice_id: uuid.UUID,
    grace_hours: float,
    now: dt.datetime | None = None,
) -> None:
    """Set an invoice's photo directory aside under .deleted/ (or remove it when grace_hours is 0)."""
    directory = upload_dir / str(user_id) / str(invoice_id)
    moment = (now or dt.datetime.now(dt.UTC)).strftime(DELETED_TIME_FORMAT)
    parked = upload_dir / DELETED_DIR / f"{moment}-{user_id}-{invoice_id}"

    def _remove() -> None:
        if not directory.is_dir():
            return
        if grace_hours > 0:
            parked.parent.mkdir(exist_ok=True)
            os.replace(directory, parked)
        else:
            shutil.rmtree(directory)

    await anyio.to_thread.run_sync(_remove)


def purge_deleted(upload_dir: Path, grace_hours: float, now: dt.datetime | None = None) -> int:
    """Remove the set-aside photo directories older than grace_hours; how many went."""
    trash = upload_dir / DELETED_DIR
    if not trash.is_dir():
        return 0
    horizon = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(hours=grace_hours)
    removed = 0
    for entry in trash.iterdir():
        try:
            when = dt.datetime.strptime(entry.name[:16], DELETED_TIME_FORMAT).replace(tzinfo=dt.UTC)
        except ValueError:
            continue  # not ours: left alone
        if when <= horizon:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed
