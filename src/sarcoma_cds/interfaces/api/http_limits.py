"""Request header size limit for ``sarcoma-cds serve`` (issue 12, denial of service).

uvicorn's fast HTTP parser (httptools) sets no limit on the size of a request's head: a 64 MB
header was read whole and its memory never returned. :class:`HeaderLimitedHttpTools` counts the
bytes of the request line and headers as they arrive and, past :data:`MAX_HEADER_BYTES`, answers
``431 Request Header Fields Too Large`` and closes the connection before reading more; the same
for the trailer fields after a chunked body (and chunk framing), which the parser keeps too. Without
httptools uvicorn's h11 protocol is used with ``h11_max_incomplete_event_size`` set to the same
limit (uvicorn then answers 400 and closes). :func:`uvicorn_options` gives ``serve`` (and the
tests) the options.
"""

from __future__ import annotations

from typing import Any

#: Largest request line + headers accepted (bytes).
MAX_HEADER_BYTES = 64 * 1024

_BODY = b"request header fields too large"

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover (uvicorn without httptools: h11 is used)
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


if HttpToolsProtocol is not None:

    class HeaderLimitedHttpTools(HttpToolsProtocol):
        """uvicorn's httptools protocol with a limit on the size of a request's head."""

        max_header_bytes = MAX_HEADER_BYTES

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True
            self._head_bytes = 0
            self._after_head = 0
            self._body_bytes = 0

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._head_bytes = 0
            self._after_head = 0
            self._body_bytes = 0
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            self._body_bytes += len(body)
            super().on_body(body)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True
            self._head_bytes = 0

        def data_received(self, data: bytes) -> None:
            in_head = self._in_head
            if in_head:
                self._head_bytes += len(data)
            else:
                self._after_head += len(data)
            super().data_received(data)
            # still inside the head after this chunk: everything read since it began is head
            head_over = self._in_head and self._head_bytes > self.max_header_bytes
            # (after the head and still in the same message: chunk framing and trailers)
            framing_over = not in_head and not self._in_head and self._framing_too_large()
            if head_over or framing_over:
                self._refuse()

        def _framing_too_large(self) -> bool:
            """What came after the head but was not body: chunk sizes and extensions, and the
            trailer fields after the last chunk, which the parser keeps like headers (30 MB of
            trailers were read whole). A few bytes per body byte are allowed for tiny chunks."""
            framing = self._after_head - self._body_bytes
            return framing > self.max_header_bytes + 8 * self._body_bytes

        def _refuse(self) -> None:
            if self.transport.is_closing():
                return
            cycle = getattr(self, "cycle", None)
            if cycle is not None and getattr(cycle, "response_started", False):
                self.transport.close()  # (an answer is under way: no second status line)
                return
            self.logger.warning("request header larger than %d bytes refused",
                                self.max_header_bytes)
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: " + str(len(_BODY)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + _BODY)
            self.transport.close()


def uvicorn_options() -> dict[str, Any]:
    """uvicorn options that limit the request head to :data:`MAX_HEADER_BYTES`."""
    if HttpToolsProtocol is not None:
        return {"http": f"{__name__}:HeaderLimitedHttpTools"}
    return {"http": "h11", "h11_max_incomplete_event_size": MAX_HEADER_BYTES}
