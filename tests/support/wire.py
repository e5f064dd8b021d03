"""
The WebSocket and HTTP wire, by hand: the upgrade request, client frames,
a raw client that sends what no library would, and raw HTTP exchanges.
"""

from __future__ import annotations

import socket
from typing import Any

from . import DEADLINE

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade(
    host: str = "127.0.0.1", *extra: str, path: str = "/socket", **fields: str | None
) -> bytes:
    """
    A whole upgrade request, as bytes: C{extra} header lines added, and
    C{fields} (C{Sec_WebSocket_Version="7"}) replacing the usual ones, or
    taking them out (L{None}).
    """
    usual: dict[str, str | None] = {
        "Host": host,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    usual.update({name.replace("_", "-"): value for name, value in fields.items()})
    lines = [f"GET {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in usual.items() if value is not None]
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode()


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = b"\x00\x00\x00\x00",
    length: int | None = None,
) -> bytes:
    """
    A client frame. The default mask key is zero, which leaves the payload
    as it is: fast to build, and as valid as any other key.
    """
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    size = len(payload) if length is None else length
    bit = 0x80 if mask is not None else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 1 << 16:
        head += bytes([bit | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + size.to_bytes(8, "big")
    if mask is None:
        return head + payload
    if mask != b"\x00\x00\x00\x00":
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + payload


def read_frame(reader: Any) -> tuple[int, bytes] | None:
    """
    The next server frame's opcode and payload from a binary file
    (C{socket.makefile("rb")}); L{None} at the end.
    """
    head = reader.read(2)
    if len(head) < 2:
        return None
    size = head[1] & 0x7F
    if size == 126:
        size = int.from_bytes(reader.read(2), "big")
    elif size == 127:
        size = int.from_bytes(reader.read(8), "big")
    payload = reader.read(size)
    if len(payload) < size:
        return None
    return head[0] & 0x0F, payload


class RawClient:
    """
    A WebSocket client on a plain socket, to send what no library would.
    """

    def __init__(
        self,
        port: int,
        *extra_headers: str,
        timeout: float = DEADLINE,
        host: str | None = None,
    ):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb")
        self.sock.sendall(upgrade(host or f"127.0.0.1:{port}", *extra_headers))
        self.response = b""
        while not self.response.endswith(b"\r\n\r\n"):
            line = self.reader.readline()
            if not line:
                break
            self.response += line
        self.status = int(self.response.split(b" ", 2)[1]) if self.response else 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> tuple[int, bytes] | None:
        """
        The next server frame's opcode and payload; L{None} at the end.
        """
        try:
            return read_frame(self.reader)
        except ConnectionResetError:
            return None  # the server aborted the connection

    def close_code(self) -> int | None:
        """
        Read up to the server's close frame; return its code.
        """
        while (received := self.read_frame()) is not None:
            opcode, payload = received
            if opcode == 8:
                return int.from_bytes(payload[:2], "big") if payload else 1005
        return None

    def ended_in_order(self) -> bool:
        """
        Whether the server, once done, ends the TCP connection in order
        (what it sent is all read, then the end) rather than resetting it.
        """
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return False

    def close(self) -> None:
        # shutdown() first: it also wakes a thread blocked reading, which a
        # bare close() would leave holding the connection open.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.reader.close()
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def assert_echoes(port: int, message: str | bytes = "still here") -> None:
    """
    A websockets client gets its message echoed.
    """
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{port}/socket", open_timeout=DEADLINE) as ws:
        ws.send(message)
        assert ws.recv(timeout=DEADLINE) == message


def raw_http(port: int, data: bytes) -> bytes:
    """
    Send C{data} on a new connection; what the server sent until it closed.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # answered and closed before it read everything
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


# The head of an upgrade request, without its final empty line: tests
# add headers (or a body, or nothing) after it.
UPGRADE = upgrade("127.0.0.1")[:-2]
