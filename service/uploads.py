"""Reading a multipart/form-data upload into memory with a hard size limit enforced while streaming.

FastAPI's `UploadFile` spools anything over 1 MB to a temporary file and only learns the size after the
whole body has arrived. Uploaded imagery must never touch the disk and an oversized upload should be cut
off as soon as it crosses the limit, so the body is fed chunk by chunk to python-multipart's streaming
parser and kept in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from service.errors import ServiceError

MAX_FIELD_BYTES = 1024
MAX_PARTS = 16
ENVELOPE_BYTES = 64 * 1024  # boundaries, part headers and small fields on top of the file itself


@dataclass
class Part:
    """One form part: a text field or a file."""

    name: str
    filename: str | None = None
    content_type: str | None = None
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Form:
    """The parsed form: text fields by name and file parts by field name."""

    fields: dict[str, str]
    files: dict[str, Part]


def _too_large(limit: int) -> ServiceError:
    return ServiceError(413, "upload_too_large", f"upload exceeds the limit of {limit} bytes")


def check_declared_length(content_length: str | None, limit: int) -> None:
    """Refuse before reading a byte when the client announces a body over the limit."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        raise ServiceError(400, "bad_content_length", "Content-Length is not an integer") from None
    if declared > limit + ENVELOPE_BYTES:
        raise _too_large(limit)


class _Collector:
    """python-multipart callbacks that assemble parts and enforce the limits."""

    def __init__(self, file_limit: int, fields: Collection[str], files: Collection[str]) -> None:
        self.file_limit = file_limit
        self.fields = fields
        self.files = files
        self.parts: list[Part] = []
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}

    def on_part_begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise ServiceError(422, "invalid_form", f"more than {MAX_PARTS} form parts")
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.decode("latin-1").strip().lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get("content-disposition", b""))
        name = options.get(b"name")
        if disposition != b"form-data" or name is None:
            raise ServiceError(422, "invalid_form", "a form part lacks 'Content-Disposition: form-data; name=...'")
        filename = options.get(b"filename")
        self._check_name(name.decode("utf-8", errors="replace"), filename is not None)
        content_type = self._headers.get("content-type")
        self.parts.append(
            Part(
                name=name.decode("utf-8", errors="replace"),
                filename=filename.decode("utf-8", errors="replace") if filename is not None else None,
                content_type=content_type.decode("latin-1") if content_type else None,
            )
        )

    def _check_name(self, name: str, is_file: bool) -> None:
        """A part the endpoint does not read, or a second part of one name, is refused by name as soon as its
        headers arrive: silently ignoring it would let a client believe a misspelt option was applied, and of
        two files only one would be searched."""
        if name not in self.fields and name not in self.files:
            known = ", ".join([*self.files, *self.fields])
            raise ServiceError(422, "unknown_field", f"unknown form field {name[:40]!r}; this form takes {known}")
        if any(part.name == name for part in self.parts):
            raise ServiceError(422, "repeated_field", f"form field {name[:40]!r} is given more than once")
        if is_file and name not in self.files:
            raise ServiceError(422, "invalid_form", f"form field {name!r} is a text field, not a file")
        if not is_file and name not in self.fields:
            raise ServiceError(422, "invalid_form", f"form field {name!r} must be a file part (with a filename)")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        part.data += data[start:end]
        limit = self.file_limit if part.filename is not None else MAX_FIELD_BYTES
        if len(part.data) > limit:
            if part.filename is not None:
                raise _too_large(self.file_limit)
            raise ServiceError(422, "invalid_form", f"form field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes")


async def read_form(
    content_type: str | None,
    body: AsyncIterator[bytes],
    file_limit: int,
    fields: Collection[str],
    files: Collection[str],
) -> Form:
    """Parse a multipart body from the request stream, stopping as soon as any limit is crossed; `fields` and
    `files` name the text fields and file parts the endpoint reads, each at most once."""
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or b"boundary" not in options:
        raise ServiceError(415, "unsupported_media_type", "send the image as multipart/form-data (field 'file')")
    collector = _Collector(file_limit, fields, files)
    callbacks = {
        "on_part_begin": collector.on_part_begin,
        "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value,
        "on_header_end": collector.on_header_end,
        "on_headers_finished": collector.on_headers_finished,
        "on_part_data": collector.on_part_data,
    }
    try:
        parser = MultipartParser(options[b"boundary"], callbacks)  # type: ignore[arg-type]
        received = 0
        async for chunk in body:
            received += len(chunk)
            if received > file_limit + ENVELOPE_BYTES:
                raise _too_large(file_limit)
            parser.write(chunk)
        parser.finalize()
    except (FormParserError, ValueError) as exc:
        raise ServiceError(422, "invalid_form", f"malformed multipart body: {exc}") from None
    except ClientDisconnect:
        raise ServiceError(400, "client_disconnected", "the upload ended before the body was complete") from None
    fields: dict[str, str] = {}
    files: dict[str, Part] = {}
    for part in collector.parts:
        if part.filename is not None:
            files[part.name] = part
            continue
        try:
            fields[part.name] = part.data.decode("utf-8")
        except UnicodeDecodeError:
            raise ServiceError(422, "invalid_form", f"form field {part.name!r} is not UTF-8") from None
    return Form(fields=fields, files=files)
