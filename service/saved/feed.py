"""The Atom feed (RFC 4287) of one saved search's matches, newest first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

ATOM = "http://www.w3.org/2005/Atom"
MEDIA_TYPE = "application/atom+xml"


def _time(value: datetime) -> str:
    """RFC 3339 in UTC (SQLite hands back naive datetimes, written in UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def atom_feed(search_id: int, name: str, self_url: str, base_url: str, found: list[dict[str, Any]]) -> bytes:
    """ElementTree escapes every text and attribute, so an archive's or user's string cannot inject markup."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}id").text = f"urn:posapl:saved-search:{search_id}"
    ET.SubElement(feed, f"{{{ATOM}}}title").text = f"Saved search: {name}"
    newest = max((m["found_at"] for m in found), default=None)
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = _time(newest or datetime.now(UTC))
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="self", href=self_url, type=MEDIA_TYPE)
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    ET.SubElement(author, f"{{{ATOM}}}name").text = "POSAPL monitor"
    for match in sorted(found, key=lambda m: (m["found_at"], m["item_id"]), reverse=True):
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        item = match["item_id"]
        ET.SubElement(entry, f"{{{ATOM}}}id").text = f"urn:posapl:saved-search:{search_id}:item:{item}"
        ET.SubElement(entry, f"{{{ATOM}}}title").text = f"Item {item} (score {match['score']:.4f})"
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = _time(match["found_at"])
        ET.SubElement(entry, f"{{{ATOM}}}link", rel="alternate", href=f"{base_url}/v1/images/{item}/view")
        ET.SubElement(entry, f"{{{ATOM}}}summary").text = (
            f"Found in index version {match['version']} with score {match['score']:.4f}"
        )
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)
