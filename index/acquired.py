"""When an item was acquired, and where that time comes from.

Time filters and the map's dates are only as good as this time, so every item records its source beside it
(`time_source`). An item of a STAC catalog takes its item's ``datetime`` (else ``start_datetime``), source
``stac`` (index.sources.catalogs); for other files the first match wins:

1. ``metadata``: what the file states: GDAL tags ``ACQUISITIONDATETIME``, ``ACQUISITION_DATETIME``,
   ``ACQUISITION_DATE``, ``DATE_ACQUIRED`` (default and ``IMAGERY`` domains), ``TIFFTAG_DATETIME``, or EXIF
   ``DateTimeOriginal`` / ``DateTime``;
2. ``filename``: the first valid date (years 1960-2099) in the file's name that stands as a token of its own
   (between ``_ - .`` or the ends of the name): ``YYYYMMDDTHHMMSS`` as Sentinel-2 writes it
   (``S2A_MSIL1C_20200513T184921_N0209_R113_T10SEG_20200513T220301`` → 2020-05-13T18:49:21Z) or ``YYYYMMDD``
   as Landsat does (``LC08_L1TP_044034_20200513_20200820_02_T1`` → 2020-05-13). Product names put the
   acquisition first and the processing date after it, so the first date is taken;
3. ``file_mtime``: the file's modification time, which says when the file was copied, not when the scene was
   seen; it is the last resort and labelled as such.

Times are ISO-8601 in UTC; a time without a zone is taken as UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from PIL import Image
from rasterio.io import DatasetReader

TimeSource = Literal["metadata", "filename", "file_mtime", "stac"]
TIME_TAGS = ("ACQUISITIONDATETIME", "ACQUISITION_DATETIME", "ACQUISITION_DATE", "DATE_ACQUIRED", "TIFFTAG_DATETIME")
TIME_FORMATS = ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d", "%Y%m%d")
# A date token: 8 digits, optionally T and 6 more, not glued to other letters or digits.
NAME_DATE = re.compile(r"(?<![0-9A-Za-z])(\d{8})(?:T(\d{6}))?(?![0-9A-Za-z])")
NAME_YEARS = range(1960, 2100)  # earlier or later "dates" in a name are numbers of another kind
EXIF_IFD, DATE_TIME_ORIGINAL, DATE_TIME = 0x8769, 36867, 306


@dataclass(frozen=True)
class Acquisition:
    time: str  # ISO-8601, UTC
    time_source: TimeSource


def parse_time(text: str) -> str | None:
    """A metadata time string (EXIF "2020:05:13 10:00:00", ISO-8601, a date) as ISO-8601 UTC; None if unreadable."""
    text = text.strip().rstrip("Z")
    for fmt in TIME_FORMATS:
        try:
            moment = datetime.strptime(text[: len(datetime(2000, 1, 1).strftime(fmt))], fmt)
        except ValueError:
            continue
        return moment.replace(tzinfo=UTC).isoformat()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def raster_time(dataset: DatasetReader) -> str | None:
    """The first readable acquisition tag of a GDAL dataset, in TIME_TAGS order, default domain first."""
    for tags in (dataset.tags(), dataset.tags(ns="IMAGERY")):
        for key in TIME_TAGS:
            if tags.get(key) and (moment := parse_time(tags[key])) is not None:
                return moment
    return None


def exif_time(image: Image.Image) -> str | None:
    """EXIF DateTimeOriginal, else DateTime, of a Pillow image."""
    try:
        exif = image.getexif()
    except (OSError, ValueError, SyntaxError):
        return None
    text = exif.get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL) or exif.get(DATE_TIME)
    return parse_time(str(text)) if text else None


def filename_time(name: str) -> str | None:
    """The first valid date token of a file name (see the module docstring), as ISO-8601 UTC."""
    for match in NAME_DATE.finditer(name):
        day, clock = match.groups()
        try:
            moment = datetime.strptime(day + (clock or "000000"), "%Y%m%d%H%M%S")
        except ValueError:
            continue
        if moment.year in NAME_YEARS:
            return moment.replace(tzinfo=UTC).isoformat()
    return None


def acquisition(metadata_time: str | None, name: str, mtime: float) -> Acquisition:
    """The item's time and its source: the file's metadata, else its name, else its modification time."""
    if metadata_time is not None:
        return Acquisition(metadata_time, "metadata")
    from_name = filename_time(name)
    if from_name is not None:
        return Acquisition(from_name, "filename")
    return Acquisition(datetime.fromtimestamp(mtime, UTC).isoformat(), "file_mtime")
