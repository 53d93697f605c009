"""Validation of what an LLM answers: good JSON becomes an ExtractionResult, anything else a
ProviderResponseError (never an unhandled exception)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from invoice_service.extraction.errors import ProviderResponseError
from invoice_service.extraction.prompt import EXTRACTION_PROMPT, parse_answer


def test_good_answer_is_validated_and_normalised() -> None:
    answer = {
        "store_name": "  Mercado Bom  ",
        "store_tax_id": "11222333000181",
        "purchase_date": "2024-03-15",
        "total": 29.88,
        "items": [
            {"description": "ARROZ 5KG", "quantity": 1, "unit_price": 24.9, "total": 24.9},
            {"description": "LEITE 1L", "quantity": "2", "unit_price": "2,49", "total": "R$ 4,98"},
            {"description": "SACOLA", "quantity": None, "unit_price": None, "total": 0},
        ],
    }
    result = parse_answer(json.dumps(answer), "gemini")
    assert result.provider == "gemini"
    assert result.store_name == "Mercado Bom"
    assert result.store_tax_id == "11.222.333/0001-81"
    assert result.purchase_date == date(2024, 3, 15)
    assert result.total == Decimal("29.88")
    assert [(i.description, i.quantity, i.unit_price, i.total) for i in result.items] == [
        ("ARROZ 5KG", Decimal(1), Decimal("24.9"), Decimal("24.9")),
        ("LEITE 1L", Decimal(2), Decimal("2.49"), Decimal("4.98")),
        ("SACOLA", Decimal(1), None, Decimal(0)),
    ]
    assert result.cached is False


def test_answer_in_a_markdown_fence_is_accepted() -> None:
    content = 'Here it is:\n```json\n{"store_name": "X", "items": []}\n```'
    assert parse_answer(content, "openai").store_name == "X"


def test_not_a_receipt_answer_is_an_empty_result() -> None:
    content = '{"store_name": null, "store_tax_id": null, "purchase_date": null, "total": null, "items": []}'
    assert parse_answer(content, "openai").is_empty()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('Sure! {"store_name": "Mercado", "total": 12,', "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "not an object"),
        ('"just a string"', "not an object"),
        ('{"items": [{"quantity": 2}]}', "items.0.description"),
        ('{"total": "muito"}', "total"),
        ('{"total": -5}', "total"),
        ('{"purchase_date": "2024-13-45"}', "purchase_date"),
        ('{"items": "ARROZ"}', "items"),
    ],
)
def test_unusable_answers_are_provider_errors(content: str, reason: str) -> None:
    with pytest.raises(ProviderResponseError, match=reason):
        parse_answer(content, "openrouter")


def test_prompt_asks_for_strict_json_with_the_result_fields() -> None:
    for key in ("store_name", "store_tax_id", "purchase_date", "total", "items", "unit_price"):
        assert f'"{key}"' in EXTRACTION_PROMPT
    assert "JSON" in EXTRACTION_PROMPT
