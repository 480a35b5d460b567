"""Raw-socket helpers for the mode tests: a SOCKS5 client speaking exactly the bytes of
RFC 1928/1929, and a threaded TCP echo server (IPv4 or IPv6)."""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data


def socks_connect(proxy_port: int, host: str, port: int, auth: tuple[str, str] | None = None,
                  command: int = 1, atyp: int | None = None, methods: bytes | None = None,
                  timeout: float = 10) -> tuple[socket.socket, int]:
    """Handshake and request; returns (socket, reply code). The socket is open on success."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
    if methods is None:
        methods = b"\x02" if auth else b"\x00"
    sock.sendall(bytes((5, len(methods))) + methods)
    version, method = recv_exact(sock, 2)
    assert version == 5
    if method == 0xFF:
        return sock, 0xFF
    if method == 2:
        user, password = (p.encode() for p in auth or ("", ""))
        sock.sendall(bytes((1, len(user))) + user + bytes((len(password),)) + password)
        status = recv_exact(sock, 2)[1]
        if status != 0:
            return sock, 0x100 | status  # authentication failed
    sock.sendall(bytes((5, command, 0)) + _address(host, atyp) + struct.pack("!H", port))
    head = recv_exact(sock, 4)
    rest = {1: 4, 4: 16}.get(head[3])
    if rest is None:
        rest = recv_exact(sock, 1)[0]
    recv_exact(sock, rest + 2)
    return sock, head[1]


def _address(host: str, atyp: int | None) -> bytes:
    if atyp is not None and atyp not in (1, 3, 4):
        return bytes((atyp, 1, 2, 3, 4))
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return bytes((3, len(host))) + host.encode()
    return bytes((1 if ip.version == 4 else 4,)) + ip.packed


class EchoServer:
    """Echoes every connection's bytes back, prefixed by a greeting on connect."""

    def __init__(self, host: str = "127.0.0.1", greeting: bytes = b"") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.greeting = greeting
        self.peers: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            self.peers.append(addr)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            if self.greeting:
                conn.sendall(self.greeting)
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def stop(self) -> None:
        self.sock.close()
