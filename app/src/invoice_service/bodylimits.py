"""Request bodies are bounded before they are read.

Every route takes at most MAX_BODY_BYTES (FastAPI's ``max_body_size``, counted as the body streams,
so a chunked body without Content-Length is cut off too); the upload route takes what its limits
allow (MAX_UPLOAD_FILES photos of MAX_UPLOAD_BYTES, plus the multipart framing). A declared
Content-Length above the limit is answered 413 before a byte is read.

FastAPI parses a form before it resolves any dependency, the login check included, so an upload
without a valid access token would be read whole before its 401. ``UploadTokenGate`` answers that
401 first, from the Authorization header alone (the same check as deps.current_user, which still
looks the user up).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from invoice_service.security import bearer_user_id
from invoice_service.settings import Settings

UPLOAD_PATH = "/invoices/upload"
# Multipart framing on top of the photos themselves: boundaries and part headers.
MULTIPART_OVERHEAD = 64 * 1024


def upload_body_limit(settings: Settings) -> int:
    """The largest upload body: every photo at its maximum, plus the framing."""
    return settings.MAX_UPLOAD_BYTES * settings.MAX_UPLOAD_FILES + MULTIPART_OVERHEAD


class UploadTokenGate:
    """401 for an upload whose bearer token is missing or invalid, before its body is read."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == UPLOAD_PATH:
            scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
            if bearer_user_id(scheme, token, self.settings) is None:
                response = JSONResponse(
                    {"detail": "Not authenticated"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer", "Connection": "close"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
