"""Serving stored audio with HTTP range requests, so that players can seek."""

from __future__ import annotations

import mimetypes
import os
import re

from django.http import FileResponse, HttpRequest, HttpResponse

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class _SlicedFile:
    """A file-like view of ``length`` bytes of an open file, read in chunks."""

    def __init__(self, handle, length: int) -> None:
        self._handle = handle
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size < 0 else min(size, self._left)
        data = self._handle.read(size)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._handle.close()


def ranged_file_response(request: HttpRequest, path: str, content_type: str | None = None) -> HttpResponse:
    """A ``FileResponse`` that honours a single ``Range: bytes=a-b`` header (206) or sends it all."""
    content_type = content_type or mimetypes.guess_type(path)[0] or "application/octet-stream"
    size = os.path.getsize(path)
    match = _RANGE.match(request.headers.get("Range", "").strip())
    if not match or (not match.group(1) and not match.group(2)):
        response = FileResponse(open(path, "rb"), content_type=content_type)  # noqa: SIM115
        response["Accept-Ranges"] = "bytes"
        return response
    if match.group(1):
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else size - 1
    else:
        start, end = max(size - int(match.group(2)), 0), size - 1
    end = min(end, size - 1)
    if start >= size or start > end:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    handle = open(path, "rb")  # noqa: SIM115
    handle.seek(start)
    response = FileResponse(_SlicedFile(handle, end - start + 1), status=206, content_type=content_type)
    response["Content-Length"] = str(end - start + 1)
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Accept-Ranges"] = "bytes"
    return response
