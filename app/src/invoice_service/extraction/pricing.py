"""What an LLM call costs: per-model prices (LLM_PRICES) applied to the tokens a call was billed for."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from invoice_service.extraction.models import Usage

#: Prices are given per this many tokens.
TOKENS_PER_PRICE_UNIT = 1_000_000


class ModelPrice(BaseModel):
    """Price of one model, in USD per 1M tokens (input: prompt tokens, output: completion tokens)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Decimal = Field(ge=0, description="USD per 1M input (prompt) tokens.")
    output: Decimal = Field(ge=0, description="USD per 1M output (completion) tokens.")


def cost_usd(prices: Mapping[str, ModelPrice], model: str, usage: Usage) -> Decimal:
    """USD that `usage` of `model` costs at `prices`; Decimal 0 when the model has no price."""
    price = prices.get(model)
    if price is None:
        return Decimal(0)
    return (usage.input_tokens * price.input + usage.output_tokens * price.output) / TOKENS_PER_PRICE_UNIT
