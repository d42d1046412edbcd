"""Red-team review of the header limit (issue 12, denial of service): the trailer fields of a
chunked body are headers too. Sent on a raw socket to a real uvicorn server started with
``serve``'s options (``http_limits``)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx

from sarcoma_cds.interfaces.api import create_app
from tests.conftest_service import make_settings
from tests.security.uvicorn_live import live_server

HEAD = (b"POST /recommendations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_megabytes_of_trailers_are_refused_and_the_server_keeps_serving(tmp_path: Path) -> None:
    """The 64 KiB head limit counted only the head: after a chunked body, trailer fields were
    read and kept without limit (30 MB accepted, the worker's memory grew by as much)."""
    with live_server(create_app(make_settings(tmp_path))) as url:
        s = socket.create_connection(("127.0.0.1", _port(url)), timeout=30)
        s.sendall(HEAD + b"2\r\n{}\r\n0\r\n")
        line = b"X-Trailer: " + b"a" * 1000 + b"\r\n"
        sent, closed = 0, False
        try:
            for _ in range(8 * 1024):  # 8 MB of trailers
                s.sendall(line)
                sent += len(line)
        except OSError:
            closed = True
        answer = b""
        if not closed:
            try:
                s.sendall(b"\r\n")
                answer = s.recv(100)
            except OSError:
                closed = True
        s.close()
        assert closed or answer.startswith(b"HTTP/1.1 431"), (sent, answer[:60])
        assert sent < 4 * 1024 * 1024, sent  # refused long before the end
        assert httpx.get(url + "/healthz", timeout=30).status_code == 200


def test_small_chunks_and_a_small_trailer_still_pass(tmp_path: Path) -> None:
    body = json.dumps({"histology": "gist", "primary_site": "stomach"}).encode()
    chunks = b"".join(b"1\r\n" + bytes([c]) + b"\r\n" for c in body)  # one byte per chunk
    with live_server(create_app(make_settings(tmp_path))) as url:
        s = socket.create_connection(("127.0.0.1", _port(url)), timeout=30)
        s.sendall(HEAD + chunks + b"0\r\nX-Checksum: abc\r\n\r\n")
        answer = s.recv(100)
        s.close()
        assert answer.split(b" ")[1] in (b"200", b"422"), answer[:60]
