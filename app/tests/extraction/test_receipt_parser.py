"""The receipt-text parser on printed receipt text and on OCR-style damage."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from receipt_images import ATACADO, PADARIA, SUPERMARKET, Item, Receipt, receipt_lines

from invoice_service.extraction.receipt_parser import parse_receipt


def _items(result_items: list) -> list[tuple[str, Decimal, Decimal | None, Decimal | None]]:
    return [(i.description, i.quantity, i.unit_price, i.total) for i in result_items]


def _expected(receipt: Receipt) -> list[tuple[str, Decimal, Decimal | None, Decimal | None]]:
    return [(i.description, i.quantity, i.unit_price, i.total) for i in receipt.items]


def test_nfce_two_line_items() -> None:
    result = parse_receipt("\n".join(receipt_lines(SUPERMARKET)))
    assert result.provider == "ocr"
    assert result.store_name == "SUPERMERCADO BOM PREÇO LTDA"
    assert result.store_tax_id == "11.222.333/0001-81"
    assert result.purchase_date == date(2024, 3, 15)
    assert result.total == SUPERMARKET.total == Decimal("200.43")
    assert _items(result.items) == _expected(SUPERMARKET)


def test_cupom_one_line_items() -> None:
    result = parse_receipt("\n".join(receipt_lines(ATACADO)))
    assert result.store_name == "ATACADÃO DISTRIBUIÇÃO COMÉRCIO E INDÚSTRIA"
    assert result.purchase_date == date(2025, 11, 2)
    assert result.total == ATACADO.total
    assert _items(result.items) == _expected(ATACADO)


def test_payment_discount_and_count_lines_are_not_items() -> None:
    result = parse_receipt("\n".join(receipt_lines(PADARIA)))
    descriptions = [item.description for item in result.items]
    assert descriptions == [item.description for item in PADARIA.items]
    assert not any("PIX" in d or "Descontos" in d or "itens" in d for d in descriptions)


def test_ocr_damage_is_tolerated() -> None:
    # What tesseract makes of a blurred photo: blank lines, "UNX" glued, a split decimal, O for 0,
    # the value of a total on its own line, a tax-code column.
    text = """
    MERCADINHO DO ZÉ
    CNPJ 11.222.333/0001-81
    Rua A, 10 - Recife/PE

    001 7891000100103 ARROZ TIPO 1 5KG
       1 UNX 24,9O 24,90

    002 7896005800010 FEIJAO PRETO 1KG 2 UN X 8;49 16, 98 T1
    003 7891910000197 ACUCAR 1KG 3UN X 4.59 13.77
    TOTAL R$
    55,65
    Emissão 05/01/2024 10:00
    """
    result = parse_receipt(text)
    assert result.store_name == "MERCADINHO DO ZÉ"
    assert result.store_tax_id == "11.222.333/0001-81"
    assert result.purchase_date == date(2024, 1, 5)
    assert result.total == Decimal("55.65")
    assert _items(result.items) == [
        ("ARROZ TIPO 1 5KG", Decimal(1), Decimal("24.90"), Decimal("24.90")),
        ("FEIJAO PRETO 1KG", Decimal(2), Decimal("8.49"), Decimal("16.98")),
        ("ACUCAR 1KG", Decimal(3), Decimal("4.59"), Decimal("13.77")),
    ]


def test_valor_a_pagar_wins_over_valor_total() -> None:
    text = "LOJA X\nVALOR TOTAL R$ 100,00\nDESCONTO R$ 10,00\nVALOR A PAGAR R$ 90,00\nTROCO R$ 0,00"
    assert parse_receipt(text).total == Decimal("90.00")


def test_invalid_cnpj_is_still_reported_when_it_is_the_only_one() -> None:
    assert parse_receipt("LOJA\nCNPJ: 11.222.333/0001-99").store_tax_id == "11.222.333/0001-99"


def test_cnpj_with_valid_check_digits_is_preferred() -> None:
    text = "LOJA\nCNPJ: 11.222.333/0001-99\nFilial CNPJ 11.222.333/0001-81"
    assert parse_receipt(text).store_tax_id == "11.222.333/0001-81"


def test_text_without_a_receipt_gives_an_empty_result() -> None:
    assert parse_receipt("").is_empty()
    assert parse_receipt("!!! ~~~ ---\n12 34\n").is_empty()


_words = st.sampled_from(
    [
        "ARROZ",
        "FEIJÃO",
        "LEITE",
        "CAFÉ",
        "PÃO",
        "AÇÚCAR",
        "ÓLEO",
        "SABÃO",
        "TOMATE",
        "MAÇÃ",
        "UHT",
        "INTEGRAL",
    ]
)
_sizes = st.sampled_from(["1KG", "500G", "2L", "900ML", "12UN", "5KG", ""])
_item = st.builds(
    Item,
    code=st.from_regex(r"\A789\d{10}\Z"),
    description=st.builds(
        lambda w, s: " ".join([*w, s]).strip(), st.lists(_words, min_size=1, max_size=3), _sizes
    ),
    quantity=st.one_of(
        st.integers(min_value=1, max_value=24).map(Decimal),
        st.decimals(min_value=Decimal("0.050"), max_value=Decimal("9.999"), places=3),
    ),
    unit=st.sampled_from(["UN", "KG", "PC", "L"]),
    unit_price=st.decimals(min_value=Decimal("0.10"), max_value=Decimal("999.99"), places=2),
)
_receipt = st.builds(
    Receipt,
    store_name=st.sampled_from(["SUPERMERCADO BOM PREÇO LTDA", "MERCADO SÃO JOSÉ", "HORTIFRUTI VERDE VIDA"]),
    cnpj=st.just("11.222.333/0001-81"),
    address=st.just("RUA DAS FLORES, 45 - CENTRO - CURITIBA/PR"),
    issued=st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2026, 1, 1)),
    items=st.lists(_item, min_size=1, max_size=25).map(tuple),
    layout=st.sampled_from(["nfce", "cupom"]),
    payment=st.sampled_from(["Dinheiro", "PIX", "Cartão de Crédito"]),
)


@settings(max_examples=150, deadline=None)
@given(_receipt)
def test_any_printed_receipt_parses_back_exactly(receipt: Receipt) -> None:
    result = parse_receipt("\n".join(receipt_lines(receipt)))
    assert result.store_name == receipt.store_name
    assert result.store_tax_id == receipt.cnpj
    assert result.purchase_date == receipt.issued.date()
    assert result.total == receipt.total
    assert _items(result.items) == _expected(receipt)


def test_misread_total_falls_back_to_the_item_sum_confirmed_by_the_payment_line() -> None:
    text = """MERCADO
    001 7891000100103 ARROZ 5KG 1 UN X 24,90 24,90
    002 7891000100104 FEIJAO 1KG 2 UN X 8,49 16,98
    TOTAL R$ 41588
    Dinheiro 41,88"""
    assert parse_receipt(text).total == Decimal("41.88")


def test_item_sum_alone_is_not_taken_for_the_total() -> None:
    text = "MERCADO\n001 7891000100103 ARROZ 5KG 1 UN X 24,90 24,90\nTOTAL R$ 2490O0"
    assert parse_receipt(text).total is None


def test_store_names_containing_header_words_are_kept() -> None:
    # "SAT", "TEL" and "CEP" are header words only as whole words.
    assert (
        parse_receipt("SUPERMERCADO SATURNO\nCNPJ: 11.222.333/0001-81").store_name == "SUPERMERCADO SATURNO"
    )
    text = "CNPJ 11.222.333/0001-81\nHORTIFRUTI ESTELA\nRUA CEPA, 1"
    assert parse_receipt(text).store_name == "HORTIFRUTI ESTELA"  # nothing above the CNPJ line
    assert parse_receipt("EXTRATO SAT 123\nMERCADO CEPAL\nCNPJ 1").store_name == "MERCADO CEPAL"
