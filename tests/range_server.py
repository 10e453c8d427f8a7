"""A local HTTP file server with byte ranges, in a child process: remote STAC assets without reaching the network.

GDAL's /vsicurl/ reads a COG by `Range` requests (the header, then the blocks a window needs) and wants
`Accept-Ranges: bytes`; Python's SimpleHTTPRequestHandler ignores `Range` and always sends the whole file. This
handler answers one `bytes=first-last` range with 206 and `Content-Range`, and sends an ETag (size and mtime,
as most static servers do) with every answer, so the indexer's change check (index.vrt) sees a replaced file.

It runs in its own process, not in a thread of the test: `rasterio.open` keeps the GIL while GDAL waits for
the answer, so a server thread of the same interpreter could never answer (the test hangs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files of `directory` with single byte ranges and an ETag; HEAD and GET only."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass  # quiet tests

    def send_head(self):  # type: ignore[no-untyped-def] - the base class's signature
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
            return None
        handle = open(path, "rb")  # noqa: SIM115 - the base class closes it after copying
        stat = os.fstat(handle.fileno())
        size, first, last = stat.st_size, 0, stat.st_size - 1
        match = RANGE.match(self.headers.get("Range", ""))
        if match and (match[1] or match[2]):
            if match[1]:
                first, last = int(match[1]), min(int(match[2] or size - 1), size - 1)
            else:  # bytes=-N: the last N bytes
                first = max(0, size - int(match[2]))
            if first >= size or first > last:
                handle.close()
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return None
            self.send_response(HTTPStatus.PARTIAL_CONTENT)
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        else:
            self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"')
        self.send_header("Last-Modified", self.date_time_string(int(stat.st_mtime)))
        self.end_headers()
        handle.seek(first)
        return _Limited(handle, last - first + 1)


class _Limited:
    """The part of an open file a range covers, as the file object the base class copies and closes."""

    def __init__(self, handle, length: int) -> None:  # type: ignore[no-untyped-def]
        self.handle, self.left = handle, length

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.handle.read(size)
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.handle.close()


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (a free port) while the block runs; yields the base URL (no trailing /)."""
    process = subprocess.Popen([sys.executable, __file__, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        port = process.stdout.readline().strip()  # the child says its port once it listens
        assert port.isdigit(), f"the file server did not start (exit status {process.poll()})"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        """GDAL closes a connection once it has the bytes it wants (a 404 of a side-car file, say): not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


if __name__ == "__main__":
    server = _Server(("127.0.0.1", 0), partial(RangeHandler, directory=sys.argv[1]))
    print(server.server_address[1], flush=True)
    server.serve_forever()
