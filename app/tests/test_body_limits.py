"""Request bodies are bounded before they are read: a declared size over the limit is refused
unread, a chunked body is cut off as it streams, and an upload without a valid token gets its 401
before any of its body is read (bodylimits.py)."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

from app_helpers import AppFactory, register_and_login
from PIL import Image

from invoice_service.bodylimits import upload_body_limit

CHUNK = 64 * 1024
MIB = 1024 * 1024


# The start of a well-formed multipart body: one file part whose content then never ends.
PART_HEAD = (
    b'--x\r\nContent-Disposition: form-data; name="files"; filename="r.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\n"
)
MULTIPART = {"Content-Type": "multipart/form-data; boundary=x"}


@dataclass
class Stream:
    """A request body of ``total`` bytes (``head`` first) sent in chunks, counting what the server
    pulled."""

    total: int
    head: bytes = b""
    pulled: int = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.head:
            self.pulled += len(self.head)
            yield self.head
        while self.pulled < self.total:
            size = min(CHUNK, self.total - self.pulled)
            self.pulled += size
            yield b"x" * size


async def test_a_declared_size_over_the_limit_is_refused_unread(app_client: AppFactory) -> None:
    async with app_client(MAX_BODY_BYTES=1024) as client:
        body = Stream(300 * MIB)
        response = await client.post(
            "/auth/login",
            content=body.chunks(),
            headers={"Content-Length": str(body.total), "Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert body.pulled == 0


async def test_a_chunked_json_body_is_cut_off_at_the_limit(app_client: AppFactory) -> None:
    async with app_client(MAX_BODY_BYTES=256 * 1024) as client:
        body = Stream(300 * MIB)
        response = await client.post(
            "/auth/login", content=body.chunks(), headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 413
    assert body.pulled <= 256 * 1024 + CHUNK


async def test_an_upload_without_a_valid_token_is_401_before_its_body_is_read(app_client: AppFactory) -> None:
    async with app_client() as client:
        for auth in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic dTpw"}):
            body = Stream(200 * MIB, PART_HEAD)
            response = await client.post(
                "/invoices/upload", content=body.chunks(), headers={**MULTIPART, **auth}
            )
            assert response.status_code == 401, auth
            assert response.headers["www-authenticate"] == "Bearer"
            assert body.pulled == 0, auth


async def test_an_authenticated_upload_is_cut_off_at_the_upload_limit(app_client: AppFactory) -> None:
    async with app_client(MAX_UPLOAD_BYTES=MIB, MAX_UPLOAD_FILES=2) as client:
        auth = await register_and_login(client)
        limit = upload_body_limit(client.app.state.core.settings)  # type: ignore[attr-defined]
        body = Stream(200 * MIB, PART_HEAD)
        response = await client.post("/invoices/upload", content=body.chunks(), headers={**auth, **MULTIPART})
    assert response.status_code == 413
    assert limit < body.pulled <= limit + CHUNK


async def test_the_upload_limit_is_the_uploads_own_not_the_json_one(app_client: AppFactory) -> None:
    """A photo far above MAX_BODY_BYTES but within MAX_UPLOAD_BYTES is accepted."""
    async with app_client(MAX_BODY_BYTES=1024, MAX_UPLOAD_BYTES=MIB) as client:
        auth = await register_and_login(client)
        png = _png(200_000)
        response = await client.post(
            "/invoices/upload", headers=auth, files=[("files", ("r.png", png, "image/png"))]
        )
    assert response.status_code == 202, response.text


def _png(size: int) -> bytes:
    """A valid PNG of about ``size`` bytes (noise does not compress)."""
    side = int((size / 3) ** 0.5) + 1
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


async def test_login_json_still_works_under_the_limit(app_client: AppFactory) -> None:
    async with app_client(MAX_BODY_BYTES=4096) as client:
        auth = await register_and_login(client)
    assert auth["Authorization"].startswith("Bearer ")
