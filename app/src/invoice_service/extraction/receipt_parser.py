"""Turn the OCR text of a Brazilian supermarket receipt (NFC-e / cupom fiscal) into an ExtractionResult.

Recognised, in the usual layout of those receipts:
- store name: the first mostly-letters line of the header (before the CNPJ line);
- CNPJ: the number on the "CNPJ" line (or the first formatted 00.000.000/0000-00 anywhere), preferring
  one whose check digits are valid;
- purchase date: the dd/mm/yyyy date of the "Emissão"/"Data" line, or the first plausible date;
- total: "VALOR A PAGAR" first, then "VALOR TOTAL" / "TOTAL R$" / "TOTAL";
- items before the total, either on one line
  ``001 7891000100103 ARROZ TIPO 1 5KG 1 UN X 24,90 24,90``
  or on two (NFC-e), description then ``1 UN X 24,90 24,90``; weighed items (``0,845 KG X 6,99 5,91``)
  included. Discount, payment and tax lines are not items.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from invoice_service.extraction.br_formats import (
    cnpj_digits_valid,
    find_dates,
    format_cnpj,
    parse_money,
    parse_quantity,
)
from invoice_service.extraction.models import ExtractedItem, ExtractionResult

_MONEY = r"\d{1,3}(?:[.\s]\d{3})*[,.]\d{2}|\d+[,.]\d{2}"
_UNIT_PRICE = r"\d{1,3}(?:[.\s]\d{3})*[,.]\d{2,3}|\d+[,.]\d{2,3}"
_QTY = r"\d+(?:[,.]\d{1,3})?"
_UNIT = r"[A-Za-z]{1,3}"
# The priced tail of an item: quantity, optional unit, optional "x", unit price, line total, and an
# optional tax-code column (T1, F, I1...).
_TAIL = (
    rf"(?P<qty>{_QTY})\s*(?:(?P<unit>{_UNIT})\.?)?\s*[xX\u00d7*]?\s*(?P<unit_price>{_UNIT_PRICE})"
    rf"\s+(?P<total>{_MONEY})(?:\s+[A-Z]{{1,2}}\d{{0,2}})?\s*$"
)
_HEAD = r"^(?:(?P<seq>\d{1,3})\s+)?(?:(?P<code>\d{4,14})\s+)?"
_ITEM_ONE_LINE = re.compile(_HEAD + r"(?P<desc>.*?[A-Za-zÀ-ÿ].*?)\s+" + _TAIL)
_ITEM_TAIL_ONLY = re.compile(r"^" + _TAIL)
_ITEM_HEAD_ONLY = re.compile(r"^(?P<seq>\d{1,3})\s+(?:(?P<code>\d{4,14})\s+)?(?P<desc>.*[A-Za-zÀ-ÿ].*)$")
_ITEM_CODE_TOTAL = re.compile(
    r"^(?P<seq>\d{1,3})\s+(?P<code>\d{6,14})\s+(?P<desc>.*?[A-Za-zÀ-ÿ].*?)\s+(?P<total>" + _MONEY + r")$"
)
_SPLIT_DECIMAL = re.compile(r"(?<=\d)(?:\s+,\s*|,\s+|;\s*)(?=\d{2}(?!\d))")
_NUMBER_WITH_O = re.compile(r"(?<!\S)(?=[\dOo.,]*\d)[\dOo]+(?:[.,][\dOo]+)+(?!\S)")
_MONEY_ANYWHERE = re.compile(r"(?<![\d,.])(" + _MONEY + r")(?![\d,])")
_CNPJ_FORMATTED = re.compile(r"\d{2}[.,]?\d{3}[.,]?\d{3}\s?/\s?\d{4}\s?-?\s?\d{2}")
_CNPJ_LOOSE = re.compile(r"\d{2}[.,\s]?\d{3}[.,\s]?\d{3}\s?/?\s?\d{4}\s?-?\s?\d{2}")

# Header lines that are not the store's name (matched as words of the accent-free upper-case line).
_HEADER_WORDS = re.compile(
    r"\b(CNPJ|CPF|IE|I\.E|DANFE|NFC|NF-?E|CUPOM|FISCAL|DOCUMENTO|AUXILIAR|CONSUMIDOR|ELETRONICA|EXTRATO"
    r"|SAT|RUA|AV|AVENIDA|ROD|RODOVIA|ESTRADA|TEL|TELEFONE|FONE|CEP|BAIRRO)\b"
)
# Lines about the whole receipt, never items.
_NOT_ITEM_WORDS = re.compile(r"\b(TOTAL|SUBTOTAL|DESCONTOS?|ACRESCIMOS?|TROCO|PAGAR|PAGO|TRIBUTOS?)\b")


@dataclass(frozen=True)
class _Line:
    text: str
    plain: str  # upper case, without accents: for keyword tests


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char)).upper()


def _lines(text: str) -> list[_Line]:
    result = []
    for raw in text.splitlines():
        cleaned = re.sub(r"\s+", " ", raw.replace("\u2014", "-")).strip(" \t|")
        # OCR of a blurred photo often splits an amount at the decimal comma ("200, 43") or reads the
        # comma as a semicolon ("13;77").
        cleaned = _SPLIT_DECIMAL.sub(",", cleaned)
        # ...and reads a 0 as the letter O inside an amount: "24,9O".
        cleaned = _NUMBER_WITH_O.sub(lambda m: m.group(0).replace("O", "0").replace("o", "0"), cleaned)
        if cleaned and not re.fullmatch(r"[-=_*.~ ]+", cleaned):
            result.append(_Line(cleaned, _plain(cleaned)))
    return result


def _clean_description(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip(" -.:;,|")


def _store_name(lines: list[_Line], cnpj_index: int | None) -> str | None:
    # The name is printed above the CNPJ line; some stores print the CNPJ first, then the name.
    above = lines[:cnpj_index][:6] if cnpj_index else []
    for line in above or lines[:4]:
        if _HEADER_WORDS.search(line.plain):
            continue
        visible = line.text.replace(" ", "")
        letters = sum(char.isalpha() for char in visible)
        if letters >= 3 and letters >= 0.6 * len(visible):
            return _clean_description(line.text)[:200] or None
    return None


def _tax_id(lines: list[_Line]) -> tuple[str | None, int | None]:
    candidates: list[tuple[str, int]] = []
    for index, line in enumerate(lines):
        if "CNPJ" in line.plain:
            candidates += [(m.group(0), index) for m in _CNPJ_LOOSE.finditer(line.text)]
    for index, line in enumerate(lines):
        candidates += [(m.group(0), index) for m in _CNPJ_FORMATTED.finditer(line.text)]
    formatted = [(format_cnpj(text), index) for text, index in candidates]
    valid = [
        (cnpj, index) for cnpj, index in formatted if cnpj and cnpj_digits_valid(re.sub(r"\D", "", cnpj))
    ]
    for cnpj, index in valid or formatted:
        if cnpj:
            return cnpj, index
    return None, None


def _purchase_date(lines: list[_Line]) -> date | None:
    today = date.today()

    def plausible(found: list[date]) -> list[date]:
        return [d for d in found if date(2000, 1, 1) <= d <= date(today.year + 1, 12, 31)]

    for line in lines:
        if ("EMISS" in line.plain or "DATA" in line.plain) and (found := plausible(find_dates(line.text))):
            return found[0]
    for line in lines:
        if found := plausible(find_dates(line.text)):
            return found[0]
    return None


def _amount_on(lines: list[_Line], index: int) -> Decimal | None:
    amounts = _MONEY_ANYWHERE.findall(lines[index].text)
    if not amounts and index + 1 < len(lines):
        # OCR sometimes puts the right-aligned value on a line of its own.
        nxt = lines[index + 1].text.replace("R$", "").strip()
        if re.fullmatch(_MONEY, nxt):
            amounts = [nxt]
    return parse_money(amounts[-1]) if amounts else None


def _total(lines: list[_Line]) -> tuple[Decimal | None, int | None]:
    rules = (
        lambda p: "A PAGAR" in p,
        lambda p: "VALOR TOTAL" in p or re.search(r"\bTOTAL\s*R\s?\$", p) is not None,
        lambda p: re.match(r"^TOTAL\b", p) is not None and "ITENS" not in p and "TRIBUT" not in p,
    )
    # Items end at the first line that states an amount about the whole receipt (the column header
    # "... VL TOTAL" holds no amount, so it does not count).
    first_total_line = next(
        (
            index
            for index, line in enumerate(lines)
            if ("TOTAL" in line.plain or "A PAGAR" in line.plain)
            and "ITENS" not in line.plain
            and _MONEY_ANYWHERE.search(line.text)
        ),
        None,
    )
    for rule in rules:
        for index, line in enumerate(lines):
            if rule(line.plain) and (amount := _amount_on(lines, index)) is not None:
                return amount, first_total_line
    return None, first_total_line


def _item(desc: str, qty: str | None, unit_price: str | None, total: str) -> ExtractedItem | None:
    description = _clean_description(desc)
    if not description or _NOT_ITEM_WORDS.search(_plain(description)):
        return None
    quantity = parse_quantity(qty) if qty else Decimal(1)
    price = parse_money(unit_price) if unit_price else None
    amount = parse_money(total)
    if quantity is None or amount is None or amount < 0 or (price is not None and price < 0):
        return None
    return ExtractedItem(description=description[:300], quantity=quantity, unit_price=price, total=amount)


def _items(lines: list[_Line]) -> list[ExtractedItem]:
    items: list[ExtractedItem] = []
    pending_desc: str | None = None
    for line in lines:
        if tail := _ITEM_TAIL_ONLY.match(line.text):
            if pending_desc is not None:
                item = _item(pending_desc, tail["qty"], tail["unit_price"], tail["total"])
                if item:
                    items.append(item)
            pending_desc = None
            continue
        if match := _ITEM_ONE_LINE.match(line.text):
            item = _item(match["desc"], match["qty"], match["unit_price"], match["total"])
            if item:
                items.append(item)
            pending_desc = None
            continue
        if match := _ITEM_CODE_TOTAL.match(line.text):
            item = _item(match["desc"], None, None, match["total"])
            if item:
                items.append(item)
            pending_desc = None
            continue
        head = _ITEM_HEAD_ONLY.match(line.text)
        pending_desc = head["desc"] if head and not _NOT_ITEM_WORDS.search(line.plain) else None
    return items


def parse_receipt(text: str, provider: str = "ocr") -> ExtractionResult:
    """Parse receipt text (as OCR read it) into an ExtractionResult; fields not found are None."""
    lines = _lines(text)
    tax_id, cnpj_index = _tax_id(lines)
    total, first_total_line = _total(lines)
    item_lines = lines[:first_total_line] if first_total_line is not None else lines
    items = _items(item_lines)
    if total is None and items:
        total = _corroborated_sum(lines, items)
    return ExtractionResult(
        store_name=_store_name(lines, cnpj_index),
        store_tax_id=tax_id,
        purchase_date=_purchase_date(lines),
        total=total,
        items=items,
        provider=provider,
    )


def _corroborated_sum(lines: list[_Line], items: list[ExtractedItem]) -> Decimal | None:
    """When the total line was misread ("TOTAL R$ 155557"), the sum of the items, but only if the same
    amount is printed elsewhere (the payment line, "VALOR PAGO")."""
    item_sum = sum((item.total for item in items if item.total is not None), Decimal(0))
    for line in lines:
        if any(
            word in line.plain for word in ("PAG", "TOTAL", "DINHEIRO", "CARTAO", "PIX", "CREDITO", "DEBITO")
        ):
            amounts = (parse_money(text) for text in _MONEY_ANYWHERE.findall(line.text))
            if item_sum in amounts:
                return item_sum
    return None
