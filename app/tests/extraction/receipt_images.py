"""Brazilian supermarket receipts for the tests: structured data, their printed text (NFC-e two-line
items or cupom-fiscal one-line items) and photos of them rendered with Pillow."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from invoice_service.extraction.br_formats import format_brl


@dataclass(frozen=True)
class Item:
    code: str
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal

    @property
    def total(self) -> Decimal:
        return (self.quantity * self.unit_price).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Receipt:
    store_name: str
    cnpj: str
    address: str
    issued: datetime
    items: tuple[Item, ...]
    layout: str = "nfce"  # or "cupom"
    payment: str = "Cartão de Débito"

    @property
    def total(self) -> Decimal:
        return sum((item.total for item in self.items), Decimal(0))


def _quantity(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(int(value))
    return f"{value:.3f}".replace(".", ",")


def _right(left: str, right: str, width: int) -> str:
    return left + " " * max(1, width - len(left) - len(right)) + right


def receipt_lines(receipt: Receipt) -> list[str]:
    """The receipt as the printer prints it."""
    width = 48 if receipt.layout == "nfce" else 56
    rule = "-" * width
    lines = [receipt.store_name, f"CNPJ: {receipt.cnpj}  IE: 123.456.789.110", receipt.address, rule]
    if receipt.layout == "nfce":
        lines += ["DANFE NFC-e - Documento Auxiliar da Nota", "Fiscal de Consumidor Eletrônica", rule]
        lines.append("CÓDIGO DESCRIÇÃO   QTD UN  VL UNIT  VL TOTAL")
    else:
        lines += ["CUPOM FISCAL ELETRÔNICO - SAT", rule, "ITEM CÓDIGO DESCRIÇÃO QTD UN VL UNIT R$ VL ITEM R$"]
    for seq, item in enumerate(receipt.items, start=1):
        priced = f"{_quantity(item.quantity)} {item.unit} X {format_brl(item.unit_price)}"
        if receipt.layout == "nfce":
            lines.append(f"{seq:03d} {item.code} {item.description}")
            lines.append(_right(" " * 12 + priced, format_brl(item.total), width))
        else:
            lines.append(
                _right(f"{seq:03d} {item.code} {item.description} {priced}", format_brl(item.total), width)
            )
    lines += [rule, _right("Qtd. total de itens", str(len(receipt.items)), width)]
    if receipt.layout == "nfce":
        lines += [
            _right("Valor total R$", format_brl(receipt.total), width),
            _right("Descontos R$", "0,00", width),
            _right("Valor a Pagar R$", format_brl(receipt.total), width),
        ]
    else:
        lines.append(_right("TOTAL R$", format_brl(receipt.total), width))
    lines += [
        _right("FORMA DE PAGAMENTO", "VALOR PAGO", width),
        _right(receipt.payment, format_brl(receipt.total), width),
        rule,
        "Consumidor não identificado",
        "NFC-e nº 123456 Série 001",
        f"Emissão: {receipt.issued:%d/%m/%Y %H:%M:%S}",
        "Protocolo de autorização: 135240001234567",
    ]
    return lines


def render(receipt: Receipt, font_path: Path, *, photo: bool = False, seed: int = 0) -> bytes:
    """A PNG of the printed receipt; with `photo`, a JPEG that looks photographed: grey background,
    slight rotation, blur, noise and JPEG compression."""
    lines = receipt_lines(receipt)
    font = ImageFont.truetype(str(font_path), 22)
    char_width = font.getbbox("M")[2]
    width = max(len(line) for line in lines) * char_width + 60
    height = len(lines) * 30 + 60
    paper = Image.new("L", (width, height), 250)
    draw = ImageDraw.Draw(paper)
    for row, line in enumerate(lines):
        draw.text((30, 30 + row * 30), line, font=font, fill=20)
    if not photo:
        buffer = io.BytesIO()
        paper.save(buffer, format="PNG")
        return buffer.getvalue()
    rng = random.Random(seed)
    background = Image.new("L", (width + 120, height + 120), 120)
    background.paste(paper, (60, 60))
    picture = background.rotate(rng.uniform(-1.2, 1.2), resample=Image.Resampling.BICUBIC, fillcolor=120)
    picture = picture.filter(ImageFilter.GaussianBlur(0.7))
    noise = Image.frombytes("L", picture.size, rng.randbytes(picture.width * picture.height))
    picture = Image.blend(picture, noise, 0.08)
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


SUPERMARKET = Receipt(
    store_name="SUPERMERCADO BOM PREÇO LTDA",
    cnpj="11.222.333/0001-81",
    address="AV. PAULISTA, 1000 - BELA VISTA - SÃO PAULO/SP",
    issued=datetime(2024, 3, 15, 14, 32, 10),
    items=(
        Item("7891000100103", "ARROZ BRANCO TIPO 1 5KG", Decimal(1), "UN", Decimal("24.90")),
        Item("7896005800010", "FEIJÃO CARIOCA 1KG", Decimal(2), "UN", Decimal("8.49")),
        Item("2000123000004", "BANANA PRATA KG", Decimal("0.845"), "KG", Decimal("6.99")),
        Item("7891910000197", "AÇÚCAR REFINADO UNIÃO 1KG", Decimal(3), "UN", Decimal("4.59")),
        Item("7894900011517", "REFRIGERANTE COCA-COLA 2L", Decimal(1), "UN", Decimal("10.99")),
        Item("7891149103102", "CAFÉ TORRADO MOÍDO 500G", Decimal(2), "UN", Decimal("18.75")),
        Item("7896036090244", "LEITE UHT INTEGRAL 1L", Decimal(12), "UN", Decimal("4.79")),
        Item("7891024134702", "SABÃO EM PÓ OMO 1,6KG", Decimal(1), "UN", Decimal("32.90")),
    ),
)

ATACADO = Receipt(
    store_name="ATACADÃO DISTRIBUIÇÃO COMÉRCIO E INDÚSTRIA",
    cnpj="75.315.333/0001-09",
    address="ROD. ANHANGUERA, KM 102 - CAMPINAS/SP",
    issued=datetime(2025, 11, 2, 9, 5, 44),
    layout="cupom",
    payment="Dinheiro",
    items=(
        Item("7891000053508", "ÓLEO DE SOJA LIZA 900ML", Decimal(6), "UN", Decimal("7.49")),
        Item("7896102502015", "MACARRÃO ESPAGUETE 500G", Decimal(4), "UN", Decimal("3.89")),
        Item("7891150037250", "MARGARINA QUALY 500G", Decimal(1), "UN", Decimal("9.99")),
        Item("2300456000007", "PATINHO BOVINO KG", Decimal("1.234"), "KG", Decimal("44.90")),
        Item("7898080640017", "PAPEL HIGIÊNICO NEVE 12UN", Decimal(1), "PC", Decimal("22.50")),
        Item("7891035800016", "DETERGENTE YPÊ 500ML", Decimal(3), "UN", Decimal("2.39")),
    ),
)

PADARIA = Receipt(
    store_name="PADARIA E MERCEARIA SÃO JOÃO",
    cnpj="04.252.011/0001-10",
    address="RUA DAS FLORES, 45 - CENTRO - CURITIBA/PR",
    issued=datetime(2023, 7, 30, 18, 47, 2),
    payment="PIX",
    items=(
        Item("0000000000017", "PÃO FRANCÊS KG", Decimal("0.520"), "KG", Decimal("16.90")),
        Item("7891000244111", "CHOCOLATE AO LEITE 90G", Decimal(2), "UN", Decimal("6.49")),
        Item("7894321711263", "IOGURTE NATURAL 170G", Decimal(4), "UN", Decimal("3.29")),
        Item("7896045104567", "QUEIJO MUSSARELA FATIADO", Decimal("0.318"), "KG", Decimal("54.90")),
    ),
)

RECEIPTS = {"supermarket_nfce": SUPERMARKET, "atacado_cupom": ATACADO, "padaria_nfce": PADARIA}
