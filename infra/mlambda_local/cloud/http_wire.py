"""HTTP/1.1 requests read off a socket, for the local cloud's two servers (the API front door, the Runtime API).

``http.server`` parses every request's headers with the ``email`` package: ~100 µs a request
here, most of what the front door cost once functions answered in microseconds. This reader
takes what one ``recv`` brings (usually a whole request), splits the head, and reads the body by
``Content-Length`` (or chunked, as some clients send). Connections are kept alive (HTTP/1.1, or
1.0 with ``keep-alive``). A body over ``max_body`` is read and discarded, so the client gets the
caller's answer (413) instead of a reset.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

MAX_HEADER_BYTES = 64 * 1024
MAX_HEADER_LINES = 100
RECV_BYTES = 256 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class BadRequestError(Exception):
    """Not HTTP/1.x this reader accepts; the connection is answered 400 (when possible) and closed."""


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One request as read: header names as sent (lookups are case-insensitive), the body or ``None`` if too large."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes | None
    keep_alive: bool

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        found = [value for key, value in self.headers if key.lower() == lowered]
        return found[-1] if found else None


class RequestReader:
    """Reads requests, one after the other, from a kept-alive connection."""

    def __init__(self, sock: socket.socket, max_body: int) -> None:
        self.sock = sock
        self.max_body = max_body
        self._buffer = b""

    def _fill(self) -> bool:
        data = self.sock.recv(RECV_BYTES)
        if not data:
            return False
        self._buffer += data
        return True

    def _take(self, size: int, keep: bool) -> bytes | None:
        """The next ``size`` bytes (``None`` at end of stream); discarded as they come when not ``keep``."""
        if keep:
            if len(self._buffer) >= size:
                data, self._buffer = self._buffer[:size], self._buffer[size:]
                return data
            # Straight into one buffer of the body's size: growing bytes by each recv copied a
            # 100 MB upload some four hundred times.
            body = bytearray(size)
            have = len(self._buffer)
            body[:have] = self._buffer
            self._buffer = b""
            view = memoryview(body)
            while have < size:
                received = self.sock.recv_into(view[have:], min(size - have, RECV_BYTES))
                if not received:
                    return None
                have += received
            return bytes(body)
        remaining = size
        while remaining > 0:
            if not self._buffer and not self._fill():
                return None
            used = min(remaining, len(self._buffer))
            self._buffer = self._buffer[used:]
            remaining -= used
        return b""

    def _line(self) -> bytes | None:
        while (end := self._buffer.find(b"\r\n")) < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise BadRequestError("line too long")
            if not self._fill():
                return None
        line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
        return line

    def _chunked(self) -> tuple[bytes, bool] | None:
        """The decoded body and whether it was over ``max_body`` (then discarded); ``None`` at end of stream."""
        parts: list[bytes] = []
        size = 0
        while True:
            line = self._line()
            if line is None:
                return None
            try:
                length = int(line.split(b";", 1)[0], 16)
            except ValueError as exc:
                raise BadRequestError("bad chunk size") from exc
            if length == 0:
                while self._line() not in (b"", None):  # trailers are ignored
                    continue
                return b"".join(parts), size > self.max_body
            keep = size + length <= self.max_body
            chunk = self._take(length, keep)
            if chunk is None or self._take(2, True) is None:
                return None
            size += length
            if keep:
                parts.append(chunk)

    def read(self) -> WireRequest | None:
        """The next request, or ``None`` when the peer closed the connection (between or within requests)."""
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise BadRequestError("request headers too long")
            if not self._fill():
                if self._buffer.strip():
                    raise BadRequestError("connection closed in the middle of a request")
                return None
        head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
        lines = head.split(b"\r\n")
        while lines and not lines[0]:  # stray empty lines before a request are allowed
            lines.pop(0)
        if not lines:
            return self.read()
        parts = lines[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequestError(f"bad request line {lines[0][:100]!r}")
        if len(lines) > MAX_HEADER_LINES:
            raise BadRequestError("too many header lines")
        method, target, version = parts
        headers: list[tuple[str, str]] = []
        length = 0
        chunked = False
        connection = ""
        expect = ""
        for line in lines[1:]:
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or not name or name != name.strip():
                raise BadRequestError(f"bad header line {line[:100]!r}")
            value = value.strip()
            headers.append((name, value))
            lowered = name.lower()
            if lowered == "content-length":
                try:
                    length = int(value)
                except ValueError as exc:
                    raise BadRequestError("bad Content-Length") from exc
                if length < 0:
                    raise BadRequestError("bad Content-Length")
            elif lowered == "transfer-encoding":
                chunked = value.lower() == "chunked"
                if not chunked and value.lower() != "identity":
                    raise BadRequestError(f"unsupported Transfer-Encoding {value!r}")
            elif lowered == "connection":
                connection = value.lower()
            elif lowered == "expect":
                expect = value.lower()
        keep_alive = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
        too_large = not chunked and length > self.max_body
        if expect == "100-continue" and not too_large and (length or chunked):
            self.sock.sendall(CONTINUE)
        if chunked:
            decoded = self._chunked()
            if decoded is None:
                return None
            body, over = decoded
            return WireRequest(method, target, version, headers, None if over else body, keep_alive)
        data = self._take(length, not too_large)
        if data is None:
            return None
        return WireRequest(method, target, version, headers, None if too_large else data, keep_alive)


def accept_forever(
    listening: socket.socket,
    serve: Callable[[socket.socket, tuple[str, int]], None],
    track: Callable[[socket.socket], bool],
    name: str,
) -> None:
    """Accept connections until ``listening`` is shut: each gets TCP_NODELAY (a response's head and
    body leave at once), is registered by ``track`` (False: the server is stopping, so it is closed
    and accepting ends), and is served by ``serve`` on a daemon thread of its own."""
    while True:
        try:
            connection, address = listening.accept()
        except OSError:
            return
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not track(connection):
            connection.close()
            return
        threading.Thread(target=serve, args=(connection, address), name=name, daemon=True).start()


def response_bytes(
    status: int, reason: str, headers: list[tuple[str, str]], body: bytes, *, head: bool = False
) -> bytes:
    """A whole HTTP/1.1 response in one buffer (one ``sendall``), ``Content-Length`` included."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{key}: {value}" for key, value in headers]
    lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode("latin-1", "replace") + b"\r\n\r\n" + (b"" if head else body)
