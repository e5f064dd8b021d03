"""
What several test modules need: a site listening on a real loopback port,
and certificates for wss.
"""

from __future__ import annotations

import datetime
import ipaddress
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer, reactor, task
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import TestCase

from wsecho.echo import EchoSettings
from wsecho.web import make_site

# Long enough for a loaded CI machine; a deadline, never a pace.
DEADLINE = 30.0


async def poll(condition, deadline=DEADLINE, interval=0.01):
    """
    Wait until C{condition()} is true, failing the test past C{deadline}.
    """
    waited = 0.0
    while not condition():
        if waited > deadline:
            raise AssertionError(f"still waiting for {condition} after {deadline}s")
        await task.deferLater(reactor, interval, lambda: None)
        waited += interval


def poll_until(condition, deadline: float = DEADLINE, interval: float = 0.05):
    """
    Outside the reactor: wait until C{condition()} is true, failing past
    C{deadline} seconds.
    """
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"still waiting for {condition} after {deadline}s")
        time.sleep(interval)


def serve(
    test: TestCase, settings: EchoSettings | None = None
) -> tuple[int, WrappingFactory]:
    """
    Listen with wsecho's site on 127.0.0.1 on a free port; on cleanup stop
    listening and wait for every connection to be closed.
    """
    tracked = WrappingFactory(make_site(settings or EchoSettings()))
    port = reactor.listenTCP(0, tracked, interface="127.0.0.1")

    async def close() -> None:
        await port.stopListening()
        try:
            await poll(lambda: not tracked.protocols, deadline=5)
        finally:
            for protocol in list(tracked.protocols):
                protocol.transport.abortConnection()
            await poll(lambda: not tracked.protocols)

    test.addCleanup(lambda: defer.Deferred.fromCoroutine(close()))
    return port.getHost().port, tracked


def make_certificates(directory: Path, names=("localhost",)) -> dict[str, Path]:
    """
    Write a CA, and a server key and certificate it signed for C{names} and
    127.0.0.1, as PEM files in C{directory}.
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wsecho test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in names] + [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        # What Python 3.13's strict verification asks of a leaf certificate.
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {
        "ca": directory / "ca.pem",
        "cert": directory / "server.pem",
        "key": directory / "server.key",
    }
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return paths


BIN = Path(sys.executable).parent


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """
    A real C{twistd -n wsecho} process, as a user starts it, with its log
    read line by line.
    """

    def __init__(
        self,
        cwd: Path,
        *args: str,
        twistd: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self.terminated = False
        self._ended = False
        if command is None:
            command = [str(BIN / "twistd"), "-n", "--pidfile=", *twistd, "wsecho"]
            command += args
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")

    def wait_for(self, text: str, deadline: float = DEADLINE) -> str:
        """
        Read the log until a line contains C{text}; fail past the deadline
        or when the process ends first.
        """
        end = time.monotonic() + deadline
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no {text!r} in the log:\n{''.join(self.log)}"
                ) from None
            if not line:
                raise AssertionError(
                    f"twistd ended before logging {text!r}:\n{''.join(self.log)}"
                )
            self.log.append(line)
            if text in line:
                return line

    def whole_log(self) -> str:
        """
        The whole log, once the process has ended.
        """
        if not self._ended:
            while line := self.lines.get(timeout=DEADLINE):
                self.log.append(line)
            self._ended = True
        return "".join(self.log)

    def terminate(self) -> None:
        """
        Send SIGTERM, once: a second one could arrive as Python, exiting,
        has put back the default handlers, and kill the process.
        """
        if not self.terminated and self.process.poll() is None:
            self.terminated = True
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        self.terminate()
        return self.process.wait(timeout=DEADLINE)


def start_daemon(cwd: Path, port: int, *args: str, **kwargs: Any) -> Daemon:
    daemon = Daemon(cwd, *args, **kwargs)
    daemon.wait_for(f"starting on {port}")
    return daemon


def rss(pid: int, field: str = "VmRSS") -> int:
    """
    A process's resident memory (or its peak, with C{VmHWM}), in bytes.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for process {pid}")


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


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
        request = [
            "GET /socket HTTP/1.1",
            f"Host: {host or f'127.0.0.1:{port}'}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            *extra_headers,
        ]
        self.sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
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
            head = self.reader.read(2)
        except ConnectionResetError:
            return None  # the server aborted the connection
        if len(head) < 2:
            return None
        size = head[1] & 0x7F
        if size == 126:
            size = int.from_bytes(self.reader.read(2), "big")
        elif size == 127:
            size = int.from_bytes(self.reader.read(8), "big")
        payload = self.reader.read(size)
        if len(payload) < size:
            return None
        return head[0] & 0x0F, payload

    def close_code(self) -> int | None:
        """
        Read up to the server's close frame; return its code.
        """
        while (received := self.read_frame()) is not None:
            opcode, payload = received
            if opcode == 8:
                return int.from_bytes(payload[:2], "big") if payload else 1005
        return None

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


def require(program: str) -> str:
    """
    The path of a system program a test needs (Debian's haproxy, chromium,
    ...). Missing, the test is skipped, or fails where the project's setup
    should have installed it (WSECHO_REQUIRE_TOOLS=1, as .ci/run sets).
    """
    import os
    import shutil

    import pytest

    path = shutil.which(program)
    if path is None:
        if os.environ.get("WSECHO_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{program} is not installed (see .ci/run)")
        pytest.skip(f"{program} is not installed")
    return path


def wait_until_stalled(progress, total: int, quiet: float = 1.0) -> None:
    """
    Poll C{progress()} until it reaches C{total} or has not moved for
    C{quiet} seconds; fail past the deadline.
    """
    end = time.monotonic() + DEADLINE
    last, since = progress(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.05)
        now = progress()
        if now >= total:
            return
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise AssertionError(f"still progressing after {DEADLINE}s: {last} of {total}")


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


UPGRADE = (
    b"GET /socket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
)
