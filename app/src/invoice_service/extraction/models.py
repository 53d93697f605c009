"""What an extraction produces, whichever provider produced it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class Usage:
    """Tokens an LLM call was billed for (the API's usage.prompt_tokens / usage.completion_tokens)."""

    input_tokens: int = 0
    output_tokens: int = 0


class ExtractedItem(BaseModel):
    """One line of the receipt."""

    model_config = ConfigDict(frozen=True)

    description: str = Field(min_length=1, max_length=300)
    quantity: Decimal = Field(default=Decimal(1), gt=0)
    unit_price: Decimal | None = Field(default=None, ge=0)
    total: Decimal | None = Field(default=None, ge=0)


class ExtractionResult(BaseModel):
    """A receipt as extracted: every field may be missing, the user confirms or edits it."""

    model_config = ConfigDict(frozen=True)

    store_name: str | None = Field(default=None, max_length=200)
    store_tax_id: str | None = Field(
        default=None, max_length=32, description="CNPJ, formatted 00.000.000/0000-00 when it has 14 digits."
    )
    purchase_date: date | None = None
    total: Decimal | None = Field(default=None, ge=0)
    items: list[ExtractedItem] = Field(default_factory=list)
    provider: str = Field(description="Name of the provider that produced the result.")
    cached: bool = Field(default=False, description="True when the result came from the Redis cache.")
    usage: Usage | None = Field(
        default=None,
        exclude=True,
        description="Tokens the provider call was billed for (LLM providers; None for OCR and for cached "
        "results). Not serialised, so never cached.",
    )

    def is_empty(self) -> bool:
        """Nothing at all was recognised (no store, date, total or item)."""
        return not (self.store_name or self.store_tax_id or self.purchase_date or self.total or self.items)
