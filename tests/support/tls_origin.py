"""HTTPS origins for the TLS and HTTP/2 tests, with their own test CA (made with cryptography).

- `TestCA(dir)`: a CA and a leaf for 127.0.0.1 / localhost, written as PEM files.
- `HttpsOrigin(ca, alpn=["http/1.1"])`: the HTTP/1.1 origin of origin.py behind TLS.
- `H2Origin(ca)`: an HTTP/2-only origin (h2 over TLS, sans-IO h2 on asyncio in a thread;
  a ClientHello offering ALPN without h2 gets a no_application_protocol alert, as nginx
  and Go answer it):
  `/bytes/N` N payload bytes, `/echo` the request body back (x-method, x-body-length),
  `/nolength/N` N bytes without content-length, `/reset` an RST_STREAM, anything else
  "hello h2" with x-path; HEAD gets the head only.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.origin import Origin, payload


class TestCA:
    """A throw-away CA (`ca_pem`) and a leaf for 127.0.0.1 and localhost (`leaf_pem`)."""

    __test__ = False

    def __init__(self, directory: Path, cn: str = "fastproxy test origin CA") -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .add_extension(x509.KeyUsage(True, False, False, False, False, True, True,
                                                  False, False), True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                         self.key.public_key()), False)
                     .sign(self.key, hashes.SHA256()))
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        self.leaf = (x509.CertificateBuilder()
                     .subject_name(x509.Name([
                         x509.NameAttribute(NameOID.COMMON_NAME, "origin.test"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Origin Test Org")]))
                     .issuer_name(name).public_key(leaf_key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.SubjectAlternativeName([
                         x509.DNSName("origin.test"), x509.DNSName("localhost"),
                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
                     .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                    False)
                     .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                         self.key.public_key()), False)
                     .sign(self.key, hashes.SHA256()))
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_pem = directory / "origin-ca.pem"
        self.ca_pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.leaf_pem = directory / "origin-leaf.pem"
        self.leaf_pem.write_bytes(
            self.leaf.public_bytes(serialization.Encoding.PEM)
            + self.cert.public_bytes(serialization.Encoding.PEM)
            + leaf_key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))

    def server_context(self, alpn: list[str]) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.leaf_pem)
        context.set_alpn_protocols(alpn)
        return context


class HttpsOrigin(Origin):
    """origin.py's server, TLS-wrapped (ALPN http/1.1): `.port`, `.url(path)`, `.requests`."""

    def __init__(self, ca: TestCA, alpn: list[str] | None = None) -> None:
        super().__init__()
        context = ca.server_context(alpn or ["http/1.1"])
        server = self.server
        accept = server.get_request

        def get_request():
            sock, addr = accept()
            # The handshake happens in the handler's thread, on its first read.
            return context.wrap_socket(sock, server_side=True,
                                       do_handshake_on_connect=False), addr
        server.get_request = get_request

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.port}{path}"


class H2Origin:
    """An HTTP/2-only TLS origin; `.requests` holds (method, path, headers dict)."""

    def __init__(self, ca: TestCA) -> None:
        self.context = ca.server_context(["h2"])
        self.requests: list[tuple[str, str, dict]] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.setblocking(False)
        self.port = self.server.getsockname()[1]
        self.loop.create_task(self._accept())
        ready.set()
        self.loop.run_forever()

    async def _accept(self) -> None:
        while True:
            try:
                sock, _ = await self.loop.sock_accept(self.server)
            except OSError:
                return
            self.loop.create_task(self._handshake(sock))

    async def _handshake(self, sock: socket.socket) -> None:
        """Peek at the ClientHello: refuse ALPN offers without h2 (RFC 7301 §3.2) with a
        fatal no_application_protocol alert (Python's ssl would go on without ALPN)."""
        from fastproxy.proxy.layers.tls import NotTLS, parse_client_hello
        sock.setblocking(False)
        hello = None
        for _ in range(2000):
            try:
                data = sock.recv(65536, socket.MSG_PEEK)
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            try:
                hello = parse_client_hello(data) if data else None
            except NotTLS:
                data = b""
            if hello is not None or data == b"":
                break
            await asyncio.sleep(0.005)
        if hello is None:
            sock.close()
            return
        if hello.alpn_offers and b"h2" not in hello.alpn_offers:
            try:
                sock.send(b"\x15\x03\x03\x00\x02\x02\x78")  # fatal alert 120
            except OSError:
                pass
            sock.close()
            return
        try:
            await self.loop.connect_accepted_socket(lambda: _H2ServerProtocol(self), sock,
                                                    ssl=self.context)
        except (OSError, ssl.SSLError):
            sock.close()

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        def close():
            self.server.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(close)
        self.thread.join(5)


class _H2ServerProtocol(asyncio.Protocol):
    def __init__(self, origin: H2Origin) -> None:
        import h2.config
        import h2.connection
        self.origin = origin
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.streams: dict[int, dict] = {}
        self.sending: dict[int, bytes] = {}

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.conn.initiate_connection()
        self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        import h2.events
        import h2.exceptions
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.transport.write(self.conn.data_to_send())
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                headers = {k.decode(): v.decode() for k, v in event.headers}
                self.streams[event.stream_id] = {"headers": headers, "body": []}
                self.origin.requests.append((headers[":method"], headers[":path"], headers))
            elif isinstance(event, h2.events.DataReceived):
                self.streams[event.stream_id]["body"].append(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.respond(event.stream_id)
            elif isinstance(event, h2.events.WindowUpdated):
                self.flush()
        self.transport.write(self.conn.data_to_send())

    def respond(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id)
        headers = stream["headers"]
        path = headers[":path"].split("?")[0]
        body = b"".join(stream["body"])
        extra = []
        length = True
        if path.startswith("/bytes/"):
            out = payload(int(path.split("/")[2]))
        elif path.startswith("/nolength/"):  # no content-length: the end is END_STREAM
            out, length = payload(int(path.split("/")[2])), False
        elif path == "/echo":
            out = body
            extra = [("x-method", headers[":method"]), ("x-body-length", str(len(body)))]
        elif path == "/reset":
            self.conn.reset_stream(stream_id, 2)
            return
        else:
            out = b"hello h2"
            extra = [("x-path", headers[":path"])]
        fields = [("content-length", str(len(out)))] if length else []
        head = headers[":method"] == "HEAD"
        self.conn.send_headers(stream_id, [(":status", "200"), *fields, ("x-origin", "h2"),
                                           *extra], end_stream=head)
        if head:
            self.transport.write(self.conn.data_to_send())
            return
        self.sending[stream_id] = out
        self.flush()

    def flush(self) -> None:
        for stream_id, data in list(self.sending.items()):
            while data:
                window = min(self.conn.local_flow_control_window(stream_id),
                             self.conn.max_outbound_frame_size)
                if window <= 0:
                    break
                self.conn.send_data(stream_id, data[:window])
                data = data[window:]
            if data:
                self.sending[stream_id] = data
            else:
                self.conn.end_stream(stream_id)
                del self.sending[stream_id]
        self.transport.write(self.conn.data_to_send())
