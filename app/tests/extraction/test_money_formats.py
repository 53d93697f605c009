"""Brazilian amounts, quantities, dates and CNPJs as receipts print them (and OCR misreads them)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invoice_service.extraction.br_formats import (
    cnpj_digits_valid,
    find_dates,
    format_brl,
    format_cnpj,
    parse_date,
    parse_money,
    parse_quantity,
)

amounts = st.decimals(min_value=0, max_value=Decimal("9999999.99"), places=2, allow_nan=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.234,56", Decimal("1234.56")),
        ("24,90", Decimal("24.90")),
        ("R$ 3,5", Decimal("3.5")),
        ("R$1.000.000,00", Decimal("1000000.00")),
        ("-1,00", Decimal("-1.00")),
        ("24.90", Decimal("24.90")),  # OCR read the comma as a period
        ("1,234.56", Decimal("1234.56")),  # US style from an LLM
        ("1.234", Decimal(1234)),
        ("4,599", Decimal("4.599")),  # unit price with 3 decimals
        ("2O,5O", Decimal("20.50")),  # letter O for zero
        ("12", Decimal(12)),
    ],
)
def test_parse_money(text: str, expected: Decimal) -> None:
    assert parse_money(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "SOS", "R$", "1,2,3a", "--1"])
def test_parse_money_rejects_non_numbers(text: str) -> None:
    assert parse_money(text) is None


@settings(deadline=None)  # CPU-bound and tiny: a loaded CI machine must not fail it
@given(amounts)
def test_money_round_trips_through_brazilian_format(value: Decimal) -> None:
    assert parse_money(format_brl(value)) == value
    assert parse_money("R$ " + format_brl(value)) == value


@settings(deadline=None)  # CPU-bound and tiny: a loaded CI machine must not fail it
@given(amounts)
def test_money_survives_ocr_reading_the_decimal_comma_as_a_period(value: Decimal) -> None:
    misread = format_brl(value).replace(".", "").replace(",", ".")
    assert parse_money(misread) == value


def test_format_brl_groups_thousands() -> None:
    assert format_brl(Decimal("1234567.5")) == "1.234.567,50"
    assert format_brl(Decimal("0.1")) == "0,10"
    assert format_brl(Decimal(-12)) == "-12,00"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2", Decimal(2)), ("0,485", Decimal("0.485")), ("1.5", Decimal("1.5")), ("0", None), ("x", None)],
)
def test_parse_quantity(text: str, expected: Decimal | None) -> None:
    assert parse_quantity(text) == expected


def test_find_dates_skips_impossible_dates() -> None:
    text = "Emissao: 31/02/2024 depois 15/03/2024 14:32:10 e 1-1-24 e 07.08.2023"
    assert find_dates(text) == [date(2024, 3, 15), date(2024, 1, 1), date(2023, 8, 7)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-15", date(2024, 3, 15)),
        ("2024-03-15T10:00:00", date(2024, 3, 15)),
        ("15/03/2024", date(2024, 3, 15)),
        ("2024-02-30", None),
        ("ontem", None),
    ],
)
def test_parse_date(text: str, expected: date | None) -> None:
    assert parse_date(text) == expected


@settings(deadline=None)  # CPU-bound and tiny: a loaded CI machine must not fail it
@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))
def test_brazilian_dates_round_trip(value: date) -> None:
    assert find_dates(f"Emissão: {value:%d/%m/%Y} 10:11:12") == [value]


def test_cnpj_check_digits() -> None:
    assert cnpj_digits_valid("11222333000181")
    assert not cnpj_digits_valid("11222333000182")
    assert not cnpj_digits_valid("00000000000000")
    assert not cnpj_digits_valid("1122233300018")


def test_format_cnpj() -> None:
    assert format_cnpj("11222333000181") == "11.222.333/0001-81"
    assert format_cnpj("11.222.333/0001-81") == "11.222.333/0001-81"
    assert format_cnpj("11.222.333/0001") is None
