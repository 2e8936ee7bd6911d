"""Request body content encodings: gzip bodies decompressed under a size cap.

InfluxDB clients (Telegraf's ``content_encoding = "gzip"``, the client libraries) compress line
protocol with gzip and say so in ``Content-Encoding``. The body limit counts the bytes on the
wire; a gzip body expands, so its decompressed size is capped too (the same limit): a 30 KB
"gzip bomb" must not become gigabytes in memory. Decompression stops one byte past the cap.
"""

from __future__ import annotations

import zlib
from typing import Final

from tsdb.errors import InvalidInputError
from tsdb.server.errors import BodyTooLargeError

__all__ = ["UnsupportedEncodingError", "decode_body"]

_IDENTITY: Final = frozenset({b"", b"identity"})
_GZIP: Final = frozenset({b"gzip", b"x-gzip"})
#: zlib's window bits for "gzip header and trailer expected".
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS


class UnsupportedEncodingError(Exception):
    """A ``Content-Encoding`` the server cannot decode (HTTP 415)."""


def decode_body(body: bytes, encoding: bytes | None, limit: int) -> bytes:
    """The body with its ``Content-Encoding`` removed; at most ``limit`` bytes.

    Raises BodyTooLargeError (413) when the decompressed body exceeds ``limit``,
    InvalidInputError (400) for corrupt or truncated gzip data, UnsupportedEncodingError (415)
    for encodings other than gzip and identity.
    """
    name = (encoding or b"").strip().lower()
    if name in _IDENTITY:
        return body
    if name not in _GZIP:
        shown = name.decode("latin-1")
        raise UnsupportedEncodingError(f"unsupported Content-Encoding {shown!r:.40}: send gzip or an uncompressed body")
    return _gunzip(body, limit)


def _gunzip(body: bytes, limit: int) -> bytes:
    """Decompress every gzip member of ``body`` (concatenated members are one stream, as in
    gzip(1)), stopping past ``limit`` output bytes."""
    out: list[bytes] = []
    size = 0
    data = body
    while True:
        inflater = zlib.decompressobj(_GZIP_WBITS)
        try:
            chunk = inflater.decompress(data, limit - size + 1)
        except zlib.error as exc:
            raise InvalidInputError(f"the gzip body cannot be decompressed: {exc}", field="body") from None
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(limit, size)
        out.append(chunk)
        if not inflater.eof:
            raise InvalidInputError("the gzip body is truncated: its end-of-stream marker is missing", field="body")
        data = inflater.unused_data
        if not data.strip(b"\x00"):  # trailing padding after the last member is allowed
            return b"".join(out)
