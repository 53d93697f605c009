"""The extraction prompt sent to LLM providers and the validation of their JSON answer."""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from invoice_service.extraction.br_formats import format_cnpj, parse_date, parse_money
from invoice_service.extraction.errors import ProviderResponseError
from invoice_service.extraction.models import ExtractedItem, ExtractionResult

EXTRACTION_PROMPT = """\
You read photos of Brazilian supermarket receipts (NFC-e, cupom fiscal).
Answer with ONE JSON object and nothing else (no prose, no Markdown), with exactly these keys:
{
  "store_name": string or null,        // the store's name as printed at the top
  "store_tax_id": string or null,      // the store's CNPJ, "00.000.000/0000-00"
  "purchase_date": string or null,     // date of issue, ISO "YYYY-MM-DD"
  "total": number or null,             // the amount paid ("VALOR A PAGAR" / "TOTAL R$")
  "items": [                           // every purchased item, in receipt order
    {"description": string, "quantity": number, "unit_price": number or null, "total": number or null}
  ]
}
Numbers use a dot as decimal separator (24.90, not "24,90"). Use null for anything you cannot read;
never invent values. If the image is not a receipt, answer {"store_name": null, "store_tax_id": null,
"purchase_date": null, "total": null, "items": []}.
"""


def _decimal(value: object) -> object:
    """Accept numbers and number-like strings ("24.90", "24,90", "R$ 1.234,56") as Decimal."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return value
    if isinstance(value, str):
        if not value.strip():
            return None
        parsed = parse_money(value)
        return parsed if parsed is not None else value
    return value


def _optional_date(value: object) -> object:
    if isinstance(value, str):
        if not value.strip():
            return None
        parsed = parse_date(value)
        return parsed if parsed is not None else value  # pydantic then reports the bad date
    return value


def _optional_text(value: object) -> object:
    if isinstance(value, str):
        return value.strip() or None
    return value


Money = Annotated[Decimal | None, BeforeValidator(_decimal)]


class _AnswerItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    description: Annotated[str, BeforeValidator(_optional_text)] = Field(min_length=1, max_length=300)
    quantity: Money = None
    unit_price: Money = None
    total: Money = None


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    store_name: Annotated[str | None, BeforeValidator(_optional_text)] = None
    store_tax_id: Annotated[str | None, BeforeValidator(_optional_text)] = None
    purchase_date: Annotated[date | None, BeforeValidator(_optional_date)] = None
    total: Money = None
    items: list[_AnswerItem] = Field(default_factory=list, max_length=500)


def _json_text(content: str) -> str:
    """The JSON object in a model's answer, without a Markdown code fence around it."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", content, re.DOTALL)
    if fenced:
        return fenced.group(1).strip()
    return content.strip()


def parse_answer(content: str, provider: str) -> ExtractionResult:
    """Validate an LLM's answer into an ExtractionResult; ProviderResponseError when it is not the
    JSON object the prompt asks for."""
    try:
        data = json.loads(_json_text(content))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProviderResponseError(f"answer is not JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from exc
    if not isinstance(data, dict):
        raise ProviderResponseError(f"answer is JSON {type(data).__name__}, not an object")
    try:
        answer = _Answer.model_validate(data)
        items = [
            ExtractedItem(
                description=item.description,
                quantity=item.quantity if item.quantity is not None and item.quantity > 0 else Decimal(1),
                unit_price=item.unit_price,
                total=item.total,
            )
            for item in answer.items
        ]
        return ExtractionResult(
            store_name=answer.store_name,
            store_tax_id=(format_cnpj(answer.store_tax_id) or answer.store_tax_id)
            if answer.store_tax_id
            else None,
            purchase_date=answer.purchase_date,
            total=answer.total,
            items=items,
            provider=provider,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ProviderResponseError(f"answer does not match the schema: {where}: {first['msg']}") from exc
