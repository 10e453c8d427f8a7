"""Webhook delivery: a signed JSON POST per batch of new matches, retried with backoff (at least once).

The body is signed like GitHub's webhooks, `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`, and
carries its delivery id in `X-POSAPL-Delivery` (the same on every retry, so a receiver can drop repeats).
Redirects are not followed and each attempt has a short timeout: a slow or hostile receiver never stalls the
update that found the matches, and a failure is only logged in the deliveries table.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa

from monitor.db import now
from monitor.settings import MonitorSettings
from monitor.tables import deliveries, matches, saved_searches

SIGNATURE_HEADER = "X-Hub-Signature-256"
DELIVERY_HEADER = "X-POSAPL-Delivery"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_url(url: str, allow_private: bool) -> None:
    """ValueError unless `url` is http(s) to a public address (every address its host resolves to)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("webhook_url must be an http or https URL with a host")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise ValueError(f"webhook_url host {parts.hostname[:100]!r} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise ValueError("webhook_url resolves to a loopback, private or link-local address; not allowed")


def queue_new_matches(engine: sa.Engine) -> int:
    """Batch every undelivered match of each search with a webhook into one pending delivery; returns batches."""
    created = 0
    with engine.begin() as db:
        rows = db.execute(
            sa.select(matches.c.search_id)
            .join(saved_searches, saved_searches.c.id == matches.c.search_id)
            .where(matches.c.delivery_id.is_(None), saved_searches.c.webhook_url.is_not(None))
            .distinct()
        ).scalars().all()
        for search_id in rows:
            delivery = uuid.uuid4().hex
            db.execute(deliveries.insert().values(
                id=delivery, search_id=search_id, attempts=0, status="pending", next_attempt=now(), created=now()
            ))
            db.execute(
                matches.update()
                .where(matches.c.search_id == search_id, matches.c.delivery_id.is_(None))
                .values(delivery_id=delivery)
            )
            created += 1
    return created


def _payload(db: sa.Connection, delivery_id: str, search_id: int) -> tuple[bytes, str, str]:
    search = db.execute(sa.select(saved_searches).where(saved_searches.c.id == search_id)).one()
    found = db.execute(
        sa.select(matches.c.item_id, matches.c.version, matches.c.score, matches.c.found_at)
        .where(matches.c.delivery_id == delivery_id)
        .order_by(matches.c.item_id)
    )
    body = {
        "delivery_id": delivery_id,
        "search": {"id": search.id, "name": search.name},
        "matches": [
            {"item_id": m.item_id, "version": m.version, "score": m.score, "found_at": m.found_at.isoformat()}
            for m in found
        ],
    }
    return json.dumps(body, sort_keys=True).encode(), search.webhook_url, search.webhook_secret or ""


def _attempt(settings: MonitorSettings, url: str, secret: str, delivery_id: str, body: bytes) -> str | None:
    """POST once; None on a 2xx answer, else why it failed."""
    try:
        check_url(url, settings.webhook_allow_private)
        response = httpx.post(
            url,
            content=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(secret, body),
                DELIVERY_HEADER: delivery_id,
            },
            timeout=settings.webhook_timeout_s,
            follow_redirects=False,
        )
    except (httpx.HTTPError, ValueError) as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None if response.is_success else f"HTTP {response.status_code}"


def deliver_due(engine: sa.Engine, settings: MonitorSettings) -> dict[str, int]:
    """Attempt every pending delivery that is due, again while retries fall due within this call.

    Each attempt is recorded before the next one, so a crash leaves the log accurate; a delivery that fails
    `webhook_max_attempts` times is marked failed and keeps its matches (they stay in the feed and the API).
    """
    counts = {"delivered": 0, "failed": 0, "pending": 0}
    while True:
        with engine.connect() as db:
            due = db.execute(
                sa.select(deliveries.c.id, deliveries.c.search_id, deliveries.c.attempts)
                .where(deliveries.c.status == "pending", deliveries.c.next_attempt <= now())
                .order_by(deliveries.c.created)
            ).all()
        if not due:
            break
        for delivery_id, search_id, attempts in due:
            with engine.connect() as db:
                body, url, secret = _payload(db, delivery_id, search_id)
            error = _attempt(settings, url, secret, delivery_id, body)
            attempts += 1
            if error is None:
                values = {"status": "delivered", "last_error": None, "next_attempt": None}
            elif attempts >= settings.webhook_max_attempts:
                values = {"status": "failed", "last_error": error, "next_attempt": None}
            else:
                wait = settings.webhook_backoff_s * 2 ** (attempts - 1)
                values = {"status": "pending", "last_error": error, "next_attempt": now() + timedelta(seconds=wait)}
            with engine.begin() as db:
                logged = deliveries.update().where(deliveries.c.id == delivery_id)
                db.execute(logged.values(attempts=attempts, **values))
            counts[values["status"]] += 1
    with engine.connect() as db:
        counts["pending"] = db.execute(
            sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.status == "pending")
        ).scalar_one()
    return counts
