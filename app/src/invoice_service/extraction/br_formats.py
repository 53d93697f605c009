"""Brazilian number, date and CNPJ formats as printed on receipts (and as OCR misreads them)."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

# Characters OCR commonly puts in place of digits inside a number.
_DIGIT_LOOKALIKES = str.maketrans({"O": "0", "o": "0", "D": "0", "I": "1", "l": "1", "|": "1", "S": "5"})
_MONEY = re.compile(r"^-?\d+([.,]\d+)*$")


def _clean_number(text: str) -> str:
    cleaned = text.strip().replace("R$", "").replace(" ", "")
    if not any(char.isdigit() for char in cleaned):
        return cleaned
    return cleaned.translate(_DIGIT_LOOKALIKES)


def parse_money(text: str) -> Decimal | None:
    """Parse an amount such as "1.234,56", "24,90", "R$ 3,5", "-1,00" or an OCR'd "24.90".

    The rightmost separator is the decimal one when it has 1-3 digits after it and either is a comma
    or is a period with exactly 2 digits after it; every other separator groups thousands. Returns None
    when the text is not a number.
    """
    cleaned = _clean_number(text)
    if not cleaned or not _MONEY.match(cleaned):
        return None
    negative = cleaned.startswith("-")
    body = cleaned.lstrip("-")
    last = max(body.rfind(","), body.rfind("."))
    if last == -1:
        integer, fraction = body, ""
    else:
        tail = body[last + 1 :]
        is_decimal = (body[last] == "," and 1 <= len(tail) <= 3) or (body[last] == "." and len(tail) == 2)
        if is_decimal:
            integer, fraction = body[:last], tail
        else:
            integer, fraction = body, ""
    integer = integer.replace(".", "").replace(",", "")
    try:
        value = Decimal(f"{integer or '0'}.{fraction}" if fraction else integer)
    except InvalidOperation:
        return None
    return -value if negative else value


def parse_quantity(text: str) -> Decimal | None:
    """Parse a quantity such as "2", "0,485", "1.5" (either separator is decimal: there are no
    thousands in receipt quantities). Returns None when the text is not a positive number."""
    cleaned = _clean_number(text).replace(",", ".")
    if not re.fullmatch(r"\d+(\.\d+)?", cleaned):
        return None
    value = Decimal(cleaned)
    return value if value > 0 else None


def format_brl(value: Decimal) -> str:
    """Format an amount the Brazilian way: 1234.5 -> "1.234,50"."""
    quantized = value.quantize(Decimal("0.01"))
    sign = "-" if quantized < 0 else ""
    integer, fraction = f"{abs(quantized):.2f}".split(".")
    groups = []
    while integer:
        groups.insert(0, integer[-3:])
        integer = integer[:-3]
    return f"{sign}{'.'.join(groups)},{fraction}"


_DATE = re.compile(r"(?<!\d)(\d{1,2})\s?[/.-]\s?(\d{1,2})\s?[/.-]\s?(\d{4}|\d{2})(?!\d)")


def find_dates(text: str) -> list[date]:
    """Every valid dd/mm/yyyy (or dd/mm/yy, dd-mm-yyyy, dd.mm.yyyy) date in the text, in order."""
    found = []
    for match in _DATE.finditer(text):
        day, month, year = (int(part) for part in match.groups())
        if year < 100:
            year += 2000
        try:
            found.append(date(year, month, day))
        except ValueError:
            continue
    return found


def parse_date(text: str) -> date | None:
    """An ISO date (yyyy-mm-dd, as LLMs answer) or the first Brazilian dd/mm/yyyy date in the text."""
    iso = re.fullmatch(r"\s*(\d{4})-(\d{2})-(\d{2})(?:[T ].*)?", text)
    if iso:
        try:
            return date(*(int(part) for part in iso.groups()))
        except ValueError:
            return None
    dates = find_dates(text)
    return dates[0] if dates else None


def cnpj_digits_valid(digits: str) -> bool:
    """Check the two verification digits of a 14-digit CNPJ."""
    if len(digits) != 14 or not digits.isdigit() or len(set(digits)) == 1:
        return False
    numbers = [int(d) for d in digits]
    for position in (12, 13):
        weights = list(range(position - 7, 1, -1)) + list(range(9, 1, -1))
        remainder = sum(n * w for n, w in zip(numbers[:position], weights, strict=True)) % 11
        if numbers[position] != (0 if remainder < 2 else 11 - remainder):
            return False
    return True


def format_cnpj(text: str) -> str | None:
    """Normalise a CNPJ to 00.000.000/0000-00; None unless the text holds exactly 14 digits."""
    digits = re.sub(r"\D", "", _clean_number(text))
    if len(digits) != 14:
        return None
    return f"{digits[:2]}.{digits[2:5]}.{digits[5:8]}/{digits[8:12]}-{digits[12:]}"
