"""An OpenAI-compatible chat-completions endpoint (OpenRouter, Gemini's compatibility API, OpenAI)."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import httpx
from pydantic import SecretStr

from invoice_service.extraction.errors import (
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeout,
)
from invoice_service.extraction.models import ExtractionResult, Usage
from invoice_service.extraction.prompt import EXTRACTION_PROMPT, parse_answer

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif", "image/heic", "image/heif"})


class OpenAICompatibleProvider:
    """POSTs the photo (a base64 data URL) and the prompt to `<base_url>/chat/completions` and validates
    the JSON the model answers. Transport errors are mapped to ProviderTimeout /
    ProviderConnectionError (retried by the chain), HTTP errors to ProviderHTTPError, unusable answers
    to ProviderResponseError. The tokens the answer reports (`usage`) come back on the result, or on
    the ProviderResponseError when the answer was billed but unusable."""

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: SecretStr,
        model: str,
        timeout_seconds: float,
    ) -> None:
        self.name = name
        self.model = model
        self.cache_variant = model
        self._api_key = api_key
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
        )

    def _payload(self, image: bytes, content_type: str) -> dict[str, object]:
        media_type = content_type if content_type in _IMAGE_TYPES else "image/jpeg"
        data_url = f"data:{media_type};base64,{base64.b64encode(image).decode('ascii')}"
        return {
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": EXTRACTION_PROMPT},
                        {"type": "image_url", "image_url": {"url": data_url}},
                    ],
                }
            ],
        }

    async def extract(self, image: bytes, content_type: str) -> ExtractionResult:
        """Send one photo; return the validated extraction, with the tokens it was billed for."""
        headers = {"Authorization": f"Bearer {self._api_key.get_secret_value()}"}
        try:
            response = await self._client.post(
                "chat/completions", json=self._payload(image, content_type), headers=headers
            )
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"{type(exc).__name__} from {self._client.base_url.host}") from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
            raise ProviderConnectionError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise ProviderHTTPError(response.status_code, _error_message(response))
        body = _json_body(response)
        usage = _usage(body)
        try:
            result = parse_answer(_message_content(body), self.name)
        except ProviderResponseError as exc:
            exc.usage = usage
            raise
        return result.model_copy(update={"usage": usage})

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _error_message(response: httpx.Response) -> str:
    """A short reason from an error response (OpenAI-style {"error": {"message": ...}} or raw text)."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:200] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"][:200]
    return response.text[:200]


def _json_body(response: httpx.Response) -> Any:
    """The decoded JSON body of a 2xx answer; ProviderResponseError when it is not JSON."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProviderResponseError("response body is not JSON") from exc


def _token_count(value: object) -> int:
    """A usage figure as a non-negative int; anything else (missing, null, text, bool) counts 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if not math.isfinite(value) or value < 0:
        return 0
    return int(value)


def _usage(body: Any) -> Usage | None:
    """usage.prompt_tokens / usage.completion_tokens of a chat-completions answer (OpenAI, OpenRouter and
    Gemini's compatibility API share the shape). None when the body is not an object at all; an answer
    without usage counts 0 tokens."""
    if not isinstance(body, dict):
        return None
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return Usage(0, 0)
    return Usage(_token_count(usage.get("prompt_tokens")), _token_count(usage.get("completion_tokens")))


def _message_content(body: Any) -> str:
    """choices[0].message.content of a chat-completions answer (string or list of text parts)."""
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ProviderResponseError("response has no choices[0].message.content") from exc
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str) or not content.strip():
        raise ProviderResponseError("the model's message is empty")
    return content
