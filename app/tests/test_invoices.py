"""Upload limits (413/415/422), storage under UPLOAD_DIR, detail, list filters, confirm, delete."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from app_helpers import PNG_1PX, AppFactory, register_and_login
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from invoice_service.uploads import DELETED_DIR, purge_deleted


def jpeg(size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, "JPEG")
    return buffer.getvalue()


async def upload(
    client: httpx.AsyncClient, auth: dict[str, str], *photos: tuple[str, bytes, str]
) -> httpx.Response:
    return await client.post("/invoices/upload", headers=auth, files=[("files", photo) for photo in photos])


async def test_upload_accepts_photos_and_stores_them(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    response = await upload(client, auth, ("a.jpg", jpeg(), "image/jpeg"), ("b.png", PNG_1PX, "image/png"))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    upload_dir = client.app.state.core.settings.UPLOAD_DIR  # type: ignore[attr-defined]
    stored = sorted(p.name for p in Path(upload_dir).rglob("*") if p.is_file())
    assert stored == ["0.jpg", "1.png"]

    detail = await client.get(f"/invoices/{body['invoice_id']}", headers=auth)
    assert detail.status_code == 200
    assert detail.json()["image_count"] == 2
    assert detail.json()["job"]["id"] == body["job_id"]
    assert detail.json()["job"]["status"] == "queued"
    async with engine.connect() as conn:
        status = (
            await conn.execute(text("SELECT status FROM jobs WHERE id = :id"), {"id": body["job_id"]})
        ).scalar_one()
    assert status == "queued"


async def test_upload_too_large_is_413(app_client: AppFactory, engine: AsyncEngine, tmp_path: Path) -> None:
    """MAX_UPLOAD_BYTES per photo: a photo of exactly the limit is taken, one byte more is a 413 that
    names the file and stores nothing (the body as a whole is well under the upload's bound, so
    this is the per-photo check, not the body limit)."""
    limit = 4096
    photo = jpeg((16, 16))
    at_limit = photo + b"\0" * (limit - len(photo))
    async with app_client(MAX_UPLOAD_BYTES=limit, UPLOAD_DIR=tmp_path / "up") as client:
        auth = await register_and_login(client)
        user_id = (await client.get("/auth/me", headers=auth)).json()["id"]
        taken = await upload(client, auth, ("fits.jpg", at_limit, "image/jpeg"))
        refused = await upload(
            client, auth, ("ok.jpg", photo, "image/jpeg"), ("big.jpg", at_limit + b"\0", "image/jpeg")
        )
    assert taken.status_code == 202, taken.text
    assert refused.status_code == 413
    assert "big.jpg" in refused.json()["detail"]
    async with engine.connect() as conn:
        count = (
            await conn.execute(text("SELECT count(*) FROM invoices WHERE user_id = :u"), {"u": user_id})
        ).scalar_one()
    assert count == 1  # only the first upload
    stored = sorted(path.name for path in (tmp_path / "up").rglob("*") if path.is_file())
    assert stored == ["0.jpg"]


async def test_upload_not_an_image_is_415_whatever_the_header_says(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    disguised = await upload(client, auth, ("receipt.png", b"%PDF-1.7 not a picture", "image/png"))
    assert disguised.status_code == 415
    script = await upload(client, auth, ("x.jpg", b"#!/bin/sh\nrm -rf /\n", "image/jpeg"))
    assert script.status_code == 415


async def test_upload_too_many_or_no_files_is_422(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    limit = client.app.state.core.settings.MAX_UPLOAD_FILES  # type: ignore[attr-defined]
    too_many = await upload(client, auth, *[(f"{i}.png", PNG_1PX, "image/png") for i in range(limit + 1)])
    assert too_many.status_code == 422
    assert str(limit) in too_many.text
    none = await client.post("/invoices/upload", headers=auth)
    assert none.status_code == 422


async def test_upload_requires_login(client: httpx.AsyncClient) -> None:
    assert (await upload(client, {}, ("a.png", PNG_1PX, "image/png"))).status_code == 401


async def test_confirm_with_edits_list_filters_and_delete(
    client: httpx.AsyncClient, auth: dict[str, str], engine: AsyncEngine
) -> None:
    invoice_id = (await upload(client, auth, ("a.png", PNG_1PX, "image/png"))).json()["invoice_id"]
    too_early = await client.post(f"/invoices/{invoice_id}/confirm", headers=auth, json={})
    assert too_early.status_code == 409

    async with engine.begin() as conn:  # what the worker does after extraction
        await conn.execute(
            text(
                "UPDATE invoices SET status = 'extracted', store_name = 'Mercado Extraido', "
                "total = 10.00, purchase_date = '2026-02-01' WHERE id = :id"
            ),
            {"id": invoice_id},
        )
    confirmed = await client.post(
        f"/invoices/{invoice_id}/confirm",
        headers=auth,
        json={
            "store_name": "Mercado Corrigido",
            "total": "12.50",
            "items": [{"description": "Cafe 500g", "quantity": "1", "unit_price": "12.50", "total": "12.50"}],
        },
    )
    assert confirmed.status_code == 200, confirmed.text
    body = confirmed.json()
    assert body["status"] == "confirmed"
    assert body["store_name"] == "Mercado Corrigido"
    assert body["purchase_date"] == "2026-02-01"  # not sent: the extracted value stays
    assert [i["description"] for i in body["items"]] == ["Cafe 500g"]

    listed = (await client.get("/invoices", headers=auth, params={"status": "confirmed"})).json()
    assert [i["id"] for i in listed["items"]] == [invoice_id]
    assert listed["items"][0]["store_name"] == "Mercado Corrigido"

    async def count(**params: str) -> int:
        return (await client.get("/invoices", headers=auth, params={**params, "count": "true"})).json()[
            "total"
        ]

    assert await count(store="corrigido") == 1
    assert await count(store="outro") == 0
    assert await count(date_from="2026-01-15", date_to="2026-02-15") == 1
    assert await count(date_from="2026-03-01") == 0

    other = await register_and_login(client)
    assert (await client.get(f"/invoices/{invoice_id}", headers=other)).status_code == 404
    assert (await client.delete(f"/invoices/{invoice_id}", headers=other)).status_code == 404

    assert (await client.delete(f"/invoices/{invoice_id}", headers=auth)).status_code == 204
    assert (await client.get(f"/invoices/{invoice_id}", headers=auth)).status_code == 404
    # The photos wait under .deleted/ for the next backup (UPLOAD_DELETE_GRACE_HOURS, 48 h), then go.
    upload_dir = Path(client.app.state.core.settings.UPLOAD_DIR)  # type: ignore[attr-defined]
    assert [p.parent.parent.name for p in upload_dir.rglob(f"*{invoice_id}*/0.png")] == [DELETED_DIR]
    assert purge_deleted(upload_dir, 48, datetime.now(UTC) + timedelta(hours=47)) == 0
    assert purge_deleted(upload_dir, 48, datetime.now(UTC) + timedelta(hours=48, seconds=1)) == 1
    assert not any(upload_dir.rglob(f"*{invoice_id}*"))


async def test_with_no_grace_period_a_deleted_invoices_photos_go_at_once(
    app_client: AppFactory, tmp_path: Path
) -> None:
    async with app_client(UPLOAD_DIR=tmp_path / "up", UPLOAD_DELETE_GRACE_HOURS=0) as client:
        auth = await register_and_login(client)
        invoice_id = (await upload(client, auth, ("a.png", PNG_1PX, "image/png"))).json()["invoice_id"]
        assert any((tmp_path / "up").rglob("0.png"))
        assert (await client.delete(f"/invoices/{invoice_id}", headers=auth)).status_code == 204
    assert not any((tmp_path / "up").rglob("*.png"))
    assert not (tmp_path / "up" / DELETED_DIR).exists()


def test_the_sweep_leaves_entries_it_did_not_name_alone(tmp_path: Path) -> None:
    (tmp_path / DELETED_DIR / "operator-notes").mkdir(parents=True)
    (tmp_path / DELETED_DIR / "20260101T000000Z-u-i").mkdir()
    assert purge_deleted(tmp_path, 48) == 1
    assert [p.name for p in (tmp_path / DELETED_DIR).iterdir()] == ["operator-notes"]


async def test_list_is_paginated(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    ids = [
        (await upload(client, auth, ("a.png", PNG_1PX, "image/png"))).json()["invoice_id"] for _ in range(5)
    ]
    first = (await client.get("/invoices", headers=auth, params={"page_size": 2})).json()
    assert [i["id"] for i in first["items"]] == ids[::-1][:2]  # newest first
    assert first["total"] is None  # counted only when asked
    assert first["next_cursor"]
    second = (
        await client.get("/invoices", headers=auth, params={"page_size": 2, "cursor": first["next_cursor"]})
    ).json()
    third = (
        await client.get("/invoices", headers=auth, params={"page_size": 2, "cursor": second["next_cursor"]})
    ).json()
    assert [i["id"] for i in second["items"]] == ids[::-1][2:4]
    assert [i["id"] for i in third["items"]] == ids[:1]
    assert third["next_cursor"] is None  # the last page says so: no empty page past the end
    counted = (await client.get("/invoices", headers=auth, params={"page_size": 2, "count": "true"})).json()
    assert (counted["total"], counted["total_capped"]) == (5, False)
    assert (await client.get(f"/invoices/{uuid.uuid4()}", headers=auth)).status_code == 404


async def test_nul_characters_are_refused_not_a_server_error(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    assert (await client.get("/invoices", headers=auth, params={"store": "a\x00b"})).status_code == 422
