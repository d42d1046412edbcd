"""Reading patient JSON the same strict way at every edge (CLI, REST, web import).

``json.loads`` keeps the last value of a repeated key: a record with two ``grade`` values would
be staged on whichever came last, silently. Here a repeated key is an error naming the key.
Files may start with a UTF-8 byte-order mark (Windows editors write one); bytes that are not
UTF-8 are reported with their offset instead of a traceback.
"""

from __future__ import annotations

import json
from typing import Any


class DuplicateKeyError(ValueError):
    """A JSON object gives the same key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key
        self.message = (
            "duplicate key: given more than once in the same object; which value is meant is "
            "ambiguous"
        )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKeyError(k)
        out[k] = v
    return out


def loads(text: str | bytes) -> Any:
    """``json.loads`` that rejects repeated keys (:class:`DuplicateKeyError`); bytes are decoded
    with :func:`decode`. Invalid JSON raises ``json.JSONDecodeError`` as usual."""
    if isinstance(text, bytes):
        text = decode(text)
    return json.loads(text, object_pairs_hook=_no_duplicates)


class NotUtf8Error(ValueError):
    """Input bytes that are not UTF-8; ``offset`` is the first bad byte (0-based)."""

    def __init__(self, err: UnicodeDecodeError, bom: bool) -> None:
        self.offset = err.start + (3 if bom else 0)
        self.byte = err.object[err.start:err.start + 1]
        super().__init__(f"not UTF-8 text (byte 0x{self.byte.hex()} at byte offset {self.offset}); "
                         "save the file as UTF-8")


def decode(raw: bytes) -> str:
    """UTF-8 text of ``raw``, a leading byte-order mark dropped; :class:`NotUtf8Error` otherwise."""
    bom = raw.startswith(b"\xef\xbb\xbf")
    body = raw[3:] if bom else raw
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NotUtf8Error(e, bom) from None
