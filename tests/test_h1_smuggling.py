"""HTTP/1 request smuggling and response splitting: raw-socket probes through the real
proxy process, against one strict origin (`tests.support.strict_origin`).

Every probe checks four things:

  (a) what the origin received: nothing of a refused request (and nothing pipelined
      after it); for an accepted one exactly one request, h11-parseable, with the
      expected target, body and framing, CRLF-only and free of control bytes;
  (b) what the client received: 400 for a bad request, 502 for a bad upstream
      response, a printable error body, never the raw bad bytes;
  (c) a request on a fresh connection right after gets the response for ITS path (a
      response queued on the pooled upstream connection would show here);
  (d) the proxy still serves (a second request on that connection, the process alive).

Three proxies serve the probes, started once for the module:
  rev   reverse mode to the origin, no addon (bodies streamed through)
  flow  reverse mode with an addon on `request` and `response` (bodies gathered)
  reg   regular mode, absolute-form targets

In the probes' bytes `@T@` is the target prefix ("" in reverse mode, "http://ORIGIN" in
regular mode), `@M@` a marker unique to the run of that probe, `@A@` the origin's
host:port.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import pytest

from tests.support.proxyproc import ProxyProcess
from tests.support.strict_origin import (
    ClientResponse,
    StrictClient,
    StrictOrigin,
    printable,
)

FLOW_ADDON = '''
def request(flow):
    pass

def response(flow):
    pass
'''

_counter = itertools.count()


# -- fixtures ------------------------------------------------------------------------------


class Proxy:
    """One module-scope proxy, restarted when a probe left it dead."""

    def __init__(self, name: str, args: tuple[str, ...], tmp_path, origin: StrictOrigin):
        self.name, self.args, self.tmp_path, self.origin = name, args, tmp_path, origin
        self.proc: ProxyProcess = ProxyProcess(*args, tmp_path=tmp_path)
        self.prefix = b"" if name != "reg" else b"http://" + origin.authority.encode()

    @property
    def port(self) -> int:
        return self.proc.port

    def alive(self) -> bool:
        return self.proc.proc.poll() is None

    def recover(self) -> None:
        """After a failed follow-up: drop the pooled upstream connections (the origin
        closes them), and start the proxy again if it died."""
        self.origin.close_connections()
        if not self.alive():
            self.proc.stop()
            self.proc = ProxyProcess(*self.args, tmp_path=self.tmp_path)
        time.sleep(0.05)

    def stop(self) -> None:
        self.proc.stop()


@pytest.fixture(scope="module")
def origin():
    server = StrictOrigin()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxies(origin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smuggling")
    addon = tmp / "gather.py"
    addon.write_text(FLOW_ADDON)
    reverse = f"reverse:http://{origin.authority}"
    started = {}
    try:
        started["rev"] = Proxy("rev", ("-m", reverse), tmp, origin)
        started["flow"] = Proxy("flow", ("-m", reverse, "-s", str(addon)), tmp, origin)
        started["reg"] = Proxy("reg", (), tmp, origin)
        yield started
    finally:
        for proxy in started.values():
            proxy.stop()


# -- helpers -------------------------------------------------------------------------------


def subst(data: bytes, proxy: Proxy, marker: bytes) -> bytes:
    return (data.replace(b"@T@", proxy.prefix).replace(b"@M@", marker)
            .replace(b"@A@", proxy.origin.authority.encode()))


def check_error_response(r: ClientResponse, statuses, problems: list[str], what: str) -> bool:
    if r.status not in statuses:
        problems.append(f"(b) client: expected {what} {statuses}, got {r!r}")
        return False
    if not printable(r.body):
        problems.append(f"(b) client: the {r.status} body has non-printable bytes: {r.body!r}")
    return True


def check_refused_at_origin(origin: StrictOrigin, mark: int, problems: list[str],
                            probe=None, marker: bytes = b"") -> None:
    """Nothing of a refused request reaches the origin. A request refused for its body
    (`probe.bad`: a bad chunk line or trailer) may have had its head and the good part of
    its body streamed already; then the bad bytes, and anything after them, never reach
    the origin, no request completes there, and that upstream connection is closed."""
    time.sleep(0.02)  # bytes the proxy wrote before answering are in the origin's log
    view = origin.since(mark)
    seen = [v[:300] for v in view.data.values()]
    if probe is None or probe.bad is None:
        if view.all_bytes or view.requests:
            problems.append(f"(a) origin: received bytes of a refused request: {seen!r}")
        return
    if view.requests:
        problems.append(f"(a) origin: a request with a bad body completed there: "
                        f"{[(r.method, r.target, r.body) for r in view.requests]} {seen!r}")
    for word in (probe.bad, b"pipelined-" + marker):
        if word in view.all_bytes:
            problems.append(f"(a) origin: received the bad bytes {word!r}: {seen!r}")
    still_open = origin.wait_closed(list(view.data))
    if still_open:
        problems.append(f"(a) origin: the upstream connection that got the head of a request "
                        f"with a bad body was left open (it could be reused): {seen!r}")


def follow_up(proxy: Proxy, origin: StrictOrigin, tag: str, problems: list[str]) -> None:
    """(c) and (d): two requests on a fresh keep-alive connection, each answered with the
    response for its own path; the origin sees exactly those two."""
    mark = origin.mark()
    ok = True
    with StrictClient(proxy.port) as c:
        for i in range(2):
            path = f"/after-{tag}-{i}".encode()
            c.send(b"GET " + proxy.prefix + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.response()
            if r.status != 200 or r.body != b"ok:" + path:
                label = "(c) fresh connection, first request" if i == 0 else \
                    "(d) proxy still serves (second request on the fresh connection)"
                problems.append(f"{label}: expected 200 {b'ok:' + path!r}, got {r!r}")
                ok = False
                break
    view = origin.since(mark)
    targets = [req.target for req in view.requests]
    expected = [f"/after-{tag}-{i}".encode() for i in range(2)]
    if ok and (targets != expected or view.errors):
        problems.append(f"(c) origin: for the follow-up expected {expected}, got {targets} "
                        f"errors={view.errors} bytes={list(view.data.values())!r}"[:1500])
        ok = False
    if not proxy.alive():
        problems.append(f"(d) the proxy process exited ({proxy.proc.proc.returncode})")
        ok = False
    if not ok:
        proxy.recover()


def check_origin_accepted(view, probe, marker: bytes, problems: list[str],
                          host: bytes | None = None) -> None:
    target = probe.target.replace(b"@M@", marker)
    if view.errors:
        problems.append(f"(a) origin: h11 refused what the proxy sent: {view.errors} "
                        f"bytes={list(view.data.values())!r}"[:1500])
    if len(view.requests) != 1:
        problems.append(f"(a) origin: expected exactly one request, got "
                        f"{[(r.method, r.target, r.body) for r in view.requests]}")
    for req in view.requests[:1]:
        if (req.method, req.target, req.body) != (probe.method, target, probe.body):
            problems.append(f"(a) origin: expected {probe.method} {target} body={probe.body!r}, "
                            f"got {req.method} {req.target} body={req.body!r}")
        cl, te = req.header_values(b"content-length"), req.header_values(b"transfer-encoding")
        if (cl and te) or len(cl) > 1 or te not in ([], [b"chunked"]):
            problems.append(f"(a) origin: ambiguous framing CL={cl} TE={te}")
        if host is not None and req.header_values(b"host") != [host]:
            problems.append(f"(a) origin: Host {req.header_values(b'host')}, expected "
                            f"[{host!r}] (absolute-form target wins)")
    bad = view.bad_head_bytes()
    if bad:
        problems.append(f"(a) origin: bare CR/LF or control bytes forwarded: {bad!r}")
    data = view.all_bytes.lower()
    for word in probe.forbid:
        if word.replace(b"@M@", marker).lower() in data:
            problems.append(f"(a) origin: received {word!r}: {list(view.data.values())!r}"[:1500])


# -- request-side probes -------------------------------------------------------------------


@dataclass
class Req:
    name: str
    raw: bytes
    expect: str                     # "reject" | "accept" | "either"
    statuses: tuple = (400,)        # what a refusal may answer
    target: bytes = b"/p-@M@"       # accepted: the origin-form target the origin must see
    body: bytes = b""
    method: bytes = b"GET"
    forbid: tuple = ()              # bytes that must never reach the origin
    modes: tuple = ("rev", "flow", "reg")
    host: bool = False              # accepted: the origin's Host must be the origin's
                                    # host:port (absolute-form wins / reverse rewrites)
    pipeline: bool = True           # refused: a good request is pipelined after it
    bad: bytes | None = None        # refused for its body: the bad bytes (see
                                    # check_refused_at_origin)


def H(line: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    """A request head from a request line and header lines."""
    return line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


POST = b"POST @T@/p-@M@ HTTP/1.1"
GET = b"GET @T@/p-@M@ HTTP/1.1"
HOST = b"Host: x"
CHUNKED = b"Transfer-Encoding: chunked"
HELLO_CHUNKED = b"5\r\nhello\r\n0\r\n\r\n"
SMUGGLED = b"GET /slow-smuggled HTTP/1.1\r\nHost: x\r\n\r\n"   # 40 bytes
TE_CL_INNER = b"GPOST /smuggled-te-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\nx=1"
E4 = (400, 501)  # an unknown transfer coding may be answered 501 (RFC 9112 6.1)


def chunked_post(first_line: bytes, rest: bytes = b"0\r\n\r\n") -> bytes:
    return H(POST, HOST, CHUNKED, body=first_line + rest)


def body_error(name: str, first: bytes, bad: bytes, rest: bytes = b"0\r\n\r\n",
               **kw) -> Req:
    """A chunked POST refused for its body: `bad` are the bytes that make it bad."""
    return Req(name, chunked_post(first, rest), "reject", bad=bad, **kw)


def accept_chunked(name: str, body_bytes: bytes, **kw) -> Req:
    return Req(name, H(POST, HOST, CHUNKED, body=body_bytes), "accept", method=b"POST",
               body=b"hello", **kw)


REQUEST_PROBES: list[Req] = [
    # ---- Content-Length / Transfer-Encoding combinations
    Req("cl_te", H(POST, HOST, b"Content-Length: 6", CHUNKED, body=b"0\r\n\r\nX"), "reject"),
    Req("te_cl", H(POST, HOST, CHUNKED, b"Content-Length: 3", body=b"0\r\n\r\n"), "reject"),
    Req("te_cl_smuggle", H(POST, HOST, CHUNKED, b"Content-Length: 4",
                           body=b"%x\r\n%s\r\n0\r\n\r\n" % (len(TE_CL_INNER), TE_CL_INNER)),
        "reject", forbid=(b"smuggled-te-cl",)),
    Req("cl_cl_differ", H(POST, HOST, b"Content-Length: 5", b"Content-Length: 6",
                          body=b"hello!"), "reject"),
    Req("cl_list_differ", H(POST, HOST, b"Content-Length: 5, 6", body=b"hello!"), "reject"),
    Req("cl_same_twice", H(POST, HOST, b"Content-Length: 5", b"Content-Length: 5",
                           body=b"hello"), "either", method=b"POST", body=b"hello",
        pipeline=False),
    Req("cl_plus", H(POST, HOST, b"Content-Length: +5", body=b"hello"), "reject"),
    Req("cl_minus", H(POST, HOST, b"Content-Length: -5", body=b"hello"), "reject"),
    Req("cl_hex", H(POST, HOST, b"Content-Length: 0x5", body=b"hello"), "reject"),
    Req("cl_inner_space", H(POST, HOST, b"Content-Length: 5 5", body=b"hello"), "reject"),
    Req("cl_decimal", H(POST, HOST, b"Content-Length: 5.0", body=b"hello"), "reject"),
    Req("cl_empty", H(POST, HOST, b"Content-Length: ", body=b"hello"), "reject"),
    Req("cl_vtab", H(POST, HOST, b"Content-Length: \x0b5", body=b"hello"), "reject"),
    Req("cl_space_before_colon", H(POST, HOST, b"Content-Length : 5", body=b"hello"),
        "reject"),
    Req("cl_overflow", H(POST, HOST, b"Content-Length: 99999999999999999999999",
                         body=b"hello"), "reject", statuses=(400, 413)),
    Req("cl_ows_ok", H(POST, HOST, b"Content-Length: \t 5 \t", body=b"hello"), "accept",
        method=b"POST", body=b"hello"),
    Req("te_chunked_identity", H(POST, HOST, b"Transfer-Encoding: chunked, identity",
                                 body=b"hello"), "reject", statuses=E4),
    Req("te_identity_chunked", H(POST, HOST, b"Transfer-Encoding: identity, chunked",
                                 body=HELLO_CHUNKED), "reject", statuses=E4),
    Req("te_xchunked", H(POST, HOST, b"Transfer-Encoding: xchunked", body=HELLO_CHUNKED),
        "reject", statuses=E4),
    Req("te_chunkedx", H(POST, HOST, b"Transfer-Encoding: chunkedx", body=HELLO_CHUNKED),
        "reject", statuses=E4),
    Req("te_quoted", H(POST, HOST, b'Transfer-Encoding: "chunked"', body=HELLO_CHUNKED),
        "reject", statuses=E4),
    Req("te_chunked_twice", H(POST, HOST, b"Transfer-Encoding: chunked, chunked",
                              body=HELLO_CHUNKED), "reject", statuses=E4),
    Req("te_two_fields", H(POST, HOST, CHUNKED, CHUNKED, body=HELLO_CHUNKED), "reject",
        statuses=E4),
    Req("te_empty", H(POST, HOST, b"Transfer-Encoding: ", body=HELLO_CHUNKED), "reject",
        statuses=E4),
    Req("te_space_before_colon", H(POST, HOST, b"Transfer-Encoding : chunked",
                                   body=HELLO_CHUNKED), "reject"),
    Req("te_vtab", H(POST, HOST, b"Transfer-Encoding:\x0bchunked", body=HELLO_CHUNKED),
        "reject"),
    Req("te_nul", H(POST, HOST, b"Transfer-Encoding: chunked\x00", body=HELLO_CHUNKED),
        "reject"),
    Req("te_obs_fold", H(POST, HOST, b"Transfer-Encoding:\r\n chunked", body=HELLO_CHUNKED),
        "reject"),
    Req("te_http10", H(b"POST @T@/p-@M@ HTTP/1.0", HOST, CHUNKED, body=HELLO_CHUNKED),
        "reject"),
    Req("te_http10_with_cl", H(b"POST @T@/p-@M@ HTTP/1.0", HOST, CHUNKED,
                               b"Content-Length: 5", body=HELLO_CHUNKED), "reject"),
    Req("te_case", H(POST, HOST, b"transfer-ENCODING: Chunked", body=HELLO_CHUNKED),
        "accept", method=b"POST", body=b"hello"),
    Req("te_ows_spaces", H(POST, HOST, b"Transfer-Encoding:   chunked   ", body=HELLO_CHUNKED),
        "either", method=b"POST", body=b"hello", pipeline=False),
    Req("te_ows_tabs", H(POST, HOST, b"Transfer-Encoding:\t chunked \t", body=HELLO_CHUNKED),
        "either", method=b"POST", body=b"hello", pipeline=False),
    Req("te_name_vtab", H(POST, HOST, b"Transfer-Encoding\x0b: chunked", body=HELLO_CHUNKED),
        "reject"),
    Req("te_in_obs_fold", H(POST, HOST, b"X-A: a\r\n Transfer-Encoding: chunked",
                            b"Content-Length: 5", body=HELLO_CHUNKED), "reject"),
    Req("cl_leading_zeros", H(POST, HOST, b"Content-Length: 005", body=b"hello"), "accept",
        method=b"POST", body=b"hello"),

    # ---- framing fields named in Connection (issue finding 1, exact bytes)
    Req("conn_content_length",
        b"POST @T@/p HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\n"
        b"Content-Length: 40\r\n\r\n" + SMUGGLED, "reject", forbid=(b"slow-smuggled",)),
    Req("conn_transfer_encoding",
        b"POST @T@/p HTTP/1.1\r\nHost: x\r\nConnection: Transfer-Encoding\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n28\r\n" + SMUGGLED + b"\r\n0\r\n\r\n", "reject",
        forbid=(b"slow-smuggled",)),
    Req("conn_close_content_length",
        b"POST @T@/p HTTP/1.1\r\nHost: x\r\nConnection: close, content-length\r\n"
        b"Content-Length: 40\r\n\r\n" + SMUGGLED, "reject", forbid=(b"slow-smuggled",)),
    Req("conn_keepalive_te", H(POST, HOST, b"Connection: keep-alive, Transfer-Encoding",
                               CHUNKED, body=HELLO_CHUNKED), "reject"),
    Req("conn_cl_zero", H(GET, HOST, b"Connection: Content-Length", b"Content-Length: 0"),
        "reject"),

    # ---- obs-fold, bare CR / LF / NUL, bad names and values
    Req("obs_fold_sp", H(GET, HOST, b"X-A: a\r\n b"), "reject"),
    Req("obs_fold_tab", H(GET, HOST, b"X-A: a\r\n\tb"), "reject"),
    Req("first_line_ws", H(GET, b" X-A: b", HOST), "reject"),
    Req("bare_lf_in_request_line", b"GET @T@/\nX-Injected: yes HTTP/1.1\r\nHost: x\r\n\r\n",
        "reject", forbid=(b"X-Injected",)),
    Req("bare_cr_in_request_line", H(b"GET @T@/p-@M@\rX HTTP/1.1", HOST), "reject"),
    Req("nul_in_request_line", H(b"GET @T@/p-@M@\x00 HTTP/1.1", HOST), "reject"),
    Req("bare_lf_line_ends", b"GET @T@/p-@M@ HTTP/1.1\nHost: x\n\n", "reject"),
    Req("bare_lf_header_end", b"GET @T@/p-@M@ HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", "reject"),
    Req("bare_lf_blank_line", b"GET @T@/p-@M@ HTTP/1.1\r\nHost: x\r\n\n", "reject"),
    Req("bare_cr_header_end", b"GET @T@/p-@M@ HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", "reject"),
    Req("bare_cr_in_value", H(GET, HOST, b"X-A: a\rb"), "reject"),
    Req("nul_in_value", H(GET, HOST, b"X-A: a\x00b"), "reject"),
    Req("ctl_in_value", H(GET, HOST, b"X-A: a\x01b"), "reject"),
    Req("del_in_value", H(GET, HOST, b"X-A: a\x7fb"), "reject"),
    Req("nul_in_name", H(GET, HOST, b"X-\x00A: b"), "reject"),
    Req("cr_in_name", H(GET, HOST, b"X-\rA: b"), "reject"),
    Req("space_in_name", H(GET, HOST, b"X A: b"), "reject"),
    Req("tab_before_colon", H(GET, HOST, b"X-A\t: b"), "reject"),
    Req("high_bit_in_name", H(GET, HOST, b"X-\xffA: b"), "reject"),
    Req("empty_name", H(GET, HOST, b": b"), "reject"),
    Req("no_colon", H(GET, HOST, b"X-NoColon"), "reject"),
    Req("obs_text_value", H(GET, HOST, b"X-A: caf\xe9"), "either", pipeline=False),

    # ---- chunk sizes
    body_error("chunk_17_hex_digits", b"10000000000000005\r\nhello\r\n", b"10000000000000005",
               statuses=(400, 413)),
    body_error("chunk_18_f", b"ffffffffffffffffff\r\nhello\r\n", b"ffffffffffffffffff",
               statuses=(400, 413)),
    body_error("chunk_negative", b"-5\r\nhello\r\n", b"-5\r\n"),
    body_error("chunk_plus", b"+5\r\nhello\r\n", b"+5\r\n"),
    body_error("chunk_0x", b"0x5\r\nhello\r\n", b"0x5"),
    body_error("chunk_empty_size", b"\r\nhello\r\n", b"hello"),
    body_error("chunk_trailing_space", b"5 \r\nhello\r\n", b"5 \r\n"),
    body_error("chunk_data_too_long", b"5\r\nhelloXX\r\n", b"helloXX"),
    body_error("chunk_missing_crlf", b"5\r\nhello", b"hello0", rest=b"0\r\n\r\n"),
    body_error("chunk_size_bare_lf", b"5\nhello\r\n", b"5\nhello"),
    body_error("chunk_data_bare_lf", b"5\r\nhello\n", b"hello\n0"),
    # ---- chunk extensions
    accept_chunked("chunk_ext_token", b"5;a=b\r\nhello\r\n0\r\n\r\n"),
    accept_chunked("chunk_ext_quoted", b'5;a="q"\r\nhello\r\n0\r\n\r\n'),
    accept_chunked("chunk_ext_name_only", b"5;a\r\nhello\r\n0\r\n\r\n"),
    accept_chunked("chunk_ext_several", b'5;a=b;c="d e"\r\nhello\r\n0\r\n\r\n'),
    accept_chunked("chunk_ext_quoted_pair", b'5;a="q\\"r"\r\nhello\r\n0\r\n\r\n'),
    body_error("chunk_ext_no_name", b"5;=x\r\nhello\r\n", b";=x"),
    body_error("chunk_ext_unbalanced_quote", b'5;a="q\r\nhello\r\n', b'"q\r\n'),
    body_error("chunk_ext_quote_in_token", b'5;a=b"c\r\nhello\r\n', b'b"c'),
    body_error("chunk_ext_ctl", b"5;a=\x01\r\nhello\r\n", b"=\x01"),
    body_error("chunk_ext_bare_cr", b"5;a=b\rc\r\nhello\r\n", b"b\rc"),
    body_error("chunk_ext_space_in_name", b"5;a b=c\r\nhello\r\n", b"a b=c"),
    body_error("chunk_ext_empty", b"5;\r\nhello\r\n", b"5;\r\n"),

    # ---- trailers
    accept_chunked("trailer_valid", b"5\r\nhello\r\n0\r\nX-T: v\r\n\r\n"),
    body_error("trailer_no_colon", b"5\r\nhello\r\n", b"X-Bad-Trailer",
               rest=b"0\r\nX-Bad-Trailer\r\n\r\n"),
    body_error("trailer_ctl", b"5\r\nhello\r\n", b"a\x01b", rest=b"0\r\nX-T: a\x01b\r\n\r\n"),
    body_error("trailer_nul", b"5\r\nhello\r\n", b"a\x00b", rest=b"0\r\nX-T: a\x00b\r\n\r\n"),
    body_error("trailer_bare_lf", b"5\r\nhello\r\n", b"X-T: v\n",
               rest=b"0\r\nX-T: v\n\r\n"),
    body_error("trailer_obs_fold", b"5\r\nhello\r\n", b"a\r\n b",
               rest=b"0\r\nX-T: a\r\n b\r\n\r\n"),
    body_error("trailer_space_in_name", b"5\r\nhello\r\n", b"X T:",
               rest=b"0\r\nX T: v\r\n\r\n"),
    # RFC 9110 §6.5.1: framing and routing fields are refused in trailers.
    body_error("trailer_content_length", b"5\r\nhello\r\n", b"Content-Length",
               rest=b"0\r\nContent-Length: 50\r\n\r\n"),
    body_error("trailer_host", b"5\r\nhello\r\n", b"Host: e",
               rest=b"0\r\nHost: evil\r\n\r\n"),

    # ---- Host and absolute-form
    Req("host_missing", H(GET), "reject"),
    Req("host_twice", H(GET, HOST, b"Host: y"), "reject"),
    Req("host_twice_same", H(GET, HOST, HOST), "reject"),
    Req("host_list", H(GET, b"Host: x, y"), "reject"),
    Req("host_space", H(GET, b"Host: a b"), "reject"),
    Req("host_missing_http10", H(b"GET @T@/p-@M@ HTTP/1.0"), "accept"),
    Req("host_mismatch", H(GET, b"Host: evil.example"), "accept", host=True,
        forbid=(b"evil.example",)),
    Req("absolute_form_host_missing", H(b"GET http://@A@/p-@M@ HTTP/1.1"), "reject",
        modes=("reg",)),

    # ---- versionless and odd request lines (issue findings 2 and 3, exact bytes)
    Req("versionless_root", b"GET @T@/\r\n\r\n", "reject"),
    Req("versionless_header_injection",
        b"GET @T@/1.1\r\nHost: evil.example\r\nX-Hop: secret\r\nConnection: X-Hop\r\n\r\n",
        "reject", forbid=(b"evil.example", b"secret")),
    Req("source_ice", b"SOURCE @T@/abc ICE/1.0\r\nHost: x\r\n\r\n", "reject",
        forbid=(b"SOURCE",)),
    Req("rtsp_version", b"GET @T@/p RTSP/1.0\r\nHost: x\r\n\r\n", "reject"),
    Req("double_space_before_version", b"GET @T@/p  HTTP/1.1\r\nHost: x\r\n\r\n", "reject"),
    Req("trailing_space_after_version", b"GET @T@/p HTTP/1.1 \r\nHost: x\r\n\r\n", "reject"),
    Req("http2_version", H(b"GET @T@/p-@M@ HTTP/2.0", HOST), "reject", statuses=(400, 505)),
    Req("lowercase_http", H(b"GET @T@/p-@M@ http/1.1", HOST), "reject"),
    Req("version_1_10", H(b"GET @T@/p-@M@ HTTP/1.10", HOST), "reject", statuses=(400, 505)),
    Req("version_01_1", H(b"GET @T@/p-@M@ HTTP/01.1", HOST), "reject", statuses=(400, 505)),
    Req("version_0_9", H(b"GET @T@/p-@M@ HTTP/0.9", HOST), "reject", statuses=(400, 505)),
    Req("leading_space", H(b" GET @T@/p-@M@ HTTP/1.1", HOST), "reject"),
    Req("double_space_before_target", H(b"GET  @T@/p-@M@ HTTP/1.1", HOST), "reject"),
    Req("tab_separator", H(b"GET\t@T@/p-@M@ HTTP/1.1", HOST), "reject"),
    Req("method_delimiter", H(b"GE(T @T@/p-@M@ HTTP/1.1", HOST), "reject"),
    Req("method_nul", H(b"G\x00ET @T@/p-@M@ HTTP/1.1", HOST), "reject"),
    Req("target_without_slash", H(b"GET p-@M@ HTTP/1.1", HOST), "reject"),
    Req("target_del", H(b"GET @T@/p-@M@\x7f HTTP/1.1", HOST), "reject"),
    Req("target_with_space", H(b"GET @T@/p-@M@ x HTTP/1.1", HOST), "reject"),
    Req("leading_empty_line", b"\r\n" + H(GET, HOST), "either", pipeline=False),

    # ---- Expect and upgrades
    Req("expect_100_all_at_once", H(POST, HOST, b"Expect: 100-continue", b"Content-Length: 5",
                                    body=b"hello"), "accept", method=b"POST", body=b"hello"),
    Req("h2c_upgrade", H(GET, HOST, b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
                         b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"), "either",
        forbid=(b"h2c", b"http2-settings"), pipeline=False),
]


def _req_params():
    for probe in REQUEST_PROBES:
        for mode in probe.modes:
            yield pytest.param(mode, probe, id=f"{mode}-{probe.name}")


@pytest.mark.parametrize("mode,probe", list(_req_params()))
def test_request(proxies, origin, mode, probe: Req):
    proxy = proxies[mode]
    marker = f"m{next(_counter)}x".encode()
    problems: list[str] = []
    raw = subst(probe.raw, proxy, marker)
    if probe.expect == "reject" and probe.pipeline:
        raw += subst(b"GET @T@/pipelined-@M@ HTTP/1.1\r\nHost: x\r\n\r\n", proxy, marker)
    mark = origin.mark()
    with StrictClient(proxy.port) as c:
        c.send(raw)
        r = c.response(method=probe.method.decode())
        refused = probe.expect == "reject" or (probe.expect == "either"
                                                and r.status in probe.statuses)
        if refused:
            if check_error_response(r, probe.statuses, problems, "refusal"):
                closed, extra = c.closed_after()
                if extra:
                    problems.append(f"(b) client: bytes after the {r.status} (a pipelined "
                                    f"request served?): {extra[:300]!r}")
                elif not closed:
                    problems.append(f"(b) client: connection left open after the {r.status}")
        else:
            expected = b"ok:" + probe.target.replace(b"@M@", marker)
            if r.status != 200 or r.body != expected:
                problems.append(f"(b) client: expected 200 {expected!r}, got {r!r}")
    if refused:
        check_refused_at_origin(origin, mark, problems, probe, marker)
    else:
        check_origin_accepted(origin.since(mark), probe, marker, problems,
                              origin.authority.encode() if probe.host else None)
    follow_up(proxy, origin, marker.decode(), problems)
    assert not problems, "\n".join(problems)


# -- response-side probes ------------------------------------------------------------------


@dataclass
class Resp:
    name: str
    raw: bytes
    expect: str          # "502" | "close_or_502" | "ok" (200) / "okNNN" | "until_close"
    body: bytes = b""    # "ok": the body the client gets; "until_close": the bytes after the head
    forbid: tuple = ()   # bytes that must never reach the client
    timeout: float = 3.0   # "quickly": e.g. no 45 s hang on a bare-LF head
    retry_ok: bool = False   # a second try on a fresh connection is allowed (RFC 9112 9.3.1)
    keep_open: bool = False  # the origin keeps serving on that connection afterwards
    method: str = "GET"


OK_HEAD = b"HTTP/1.1 200 OK\r\n"
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

RESPONSE_PROBES: list[Resp] = [
    Resp("status_000", b"HTTP/1.1 000 Zero\r\nContent-Length: 2\r\n\r\nok", "502",
         forbid=(b"Zero",)),
    Resp("status_001", b"HTTP/1.1 001 One\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
         "502", forbid=(b"One",)),
    Resp("status_099", b"HTTP/1.1 099 Ninety\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
         "502", forbid=(b"Ninety",)),
    Resp("status_2000", b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok", "502"),
    Resp("status_two_digits", b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok", "502"),
    Resp("status_letters", b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok", "502"),
    Resp("reason_ctl", b"HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nok", "502",
         forbid=(b"O\x01K",)),
    Resp("reason_nul", b"HTTP/1.1 200 O\x00K\r\nContent-Length: 2\r\n\r\nok", "502",
         forbid=(b"O\x00K",)),
    Resp("crlf_crlf", b"\r\n\r\n", "502"),
    Resp("empty_close", b"", "502", retry_ok=True),
    Resp("garbage", b"garbage\r\n\r\n", "502", forbid=(b"garbage",)),
    Resp("no_head", b"hello world", "502", forbid=(b"hello world",)),
    Resp("lowercase_version", b"http/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "502"),
    Resp("version_2_0", b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "502"),
    Resp("te_xchunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n" + HELLO_CHUNKED,
         "until_close", body=HELLO_CHUNKED),
    Resp("te_chunked_then_xchunked",
         b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, xchunked\r\n\r\n" + HELLO_CHUNKED,
         "until_close", body=HELLO_CHUNKED),
    Resp("cl_te", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
         + HELLO_CHUNKED, "502"),
    Resp("cl_cl_differ", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk",
         "502"),
    Resp("cl_plus", b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", "502"),
    Resp("cl_hex", b"HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nok", "502"),
    Resp("connection_content_length",
         b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\nok", "502"),
    Resp("connection_transfer_encoding",
         b"HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"2\r\nok\r\n0\r\n\r\n", "502"),
    Resp("connection_close_content_length",
         b"HTTP/1.1 200 OK\r\nConnection: close, content-length\r\nContent-Length: 2\r\n\r\nok",
         "502"),
    Resp("bare_lf_head", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "502"),
    Resp("bare_lf_blank_line", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\nok", "502"),
    Resp("bare_lf_one_field", b"HTTP/1.1 200 OK\r\nX-A: b\nContent-Length: 2\r\n\r\nok", "502"),
    Resp("bare_cr_head", b"HTTP/1.1 200 OK\rContent-Length: 2\r\n\r\nok", "502"),
    Resp("obs_fold", b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok", "502"),
    Resp("nul_in_value", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok", "502",
         forbid=(b"a\x00b",)),
    Resp("ctl_in_value", b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nok", "502",
         forbid=(b"a\x01b",)),
    Resp("space_before_colon", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", "502"),
    Resp("space_in_name", b"HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 2\r\n\r\nok", "502"),
    Resp("no_colon", b"HTTP/1.1 200 OK\r\nX-NoColon\r\nContent-Length: 2\r\n\r\nok", "502",
         forbid=(b"X-NoColon",)),
    Resp("chunk_ext_no_name", CHUNKED_HEAD + b"5;=x\r\nhello\r\n0\r\n\r\n", "close_or_502",
         forbid=(b";=x",)),
    Resp("chunk_ext_unbalanced_quote", CHUNKED_HEAD + b'5;a="q\r\nhello\r\n0\r\n\r\n',
         "close_or_502", forbid=(b'"q',)),
    Resp("chunk_ext_ctl", CHUNKED_HEAD + b"5;a=\x01\r\nhello\r\n0\r\n\r\n", "close_or_502",
         forbid=(b"a=\x01",)),
    Resp("trailer_no_colon", CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nX-Bad-Trailer\r\n\r\n",
         "close_or_502", forbid=(b"X-Bad-Trailer",)),
    Resp("trailer_ctl", CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nX-T: a\x01b\r\n\r\n",
         "close_or_502", forbid=(b"a\x01b",)),
    Resp("trailer_nul", CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n",
         "close_or_502", forbid=(b"a\x00b",)),
    Resp("chunk_18_f", CHUNKED_HEAD + b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
         "close_or_502", forbid=(b"ffffffffffffffffff",)),
    Resp("chunk_17_hex_digits", CHUNKED_HEAD + b"10000000000000005\r\nhello\r\n0\r\n\r\n",
         "close_or_502", forbid=(b"10000000000000005",)),
    Resp("bad_chunk_with_head", CHUNKED_HEAD + b"zz\r\nhello\r\n0\r\n\r\n", "502",
         forbid=(b"zz\r\n",)),
    Resp("short_body_then_close", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
         "close_or_502"),
    Resp("chunk_ext_token", CHUNKED_HEAD + b"5;a=b\r\nhello\r\n0\r\n\r\n", "ok", body=b"hello"),
    Resp("chunk_ext_quoted", CHUNKED_HEAD + b'5;a="q"\r\nhello\r\n0\r\n\r\n', "ok",
         body=b"hello"),
    Resp("trailer_valid", CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nX-T: v\r\n\r\n", "ok",
         body=b"hello"),
    Resp("content_length", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "ok",
         body=b"hello"),
    Resp("close_delimited", b"HTTP/1.1 200 OK\r\n\r\nhello", "ok", body=b"hello"),
    Resp("interim_100", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2"
         b"\r\n\r\nok", "ok", body=b"ok"),
    # an origin that sends more than the framing says, on a connection it keeps open: the
    # extra bytes must never become the answer to the next request on that connection
    Resp("extra_bytes_after_body",
         b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"
         b"Content-Length: 7\r\n\r\nEXTRA!!", "ok", body=b"ok", forbid=(b"EXTRA",),
         keep_open=True),
    Resp("head_response_with_body",
         b"HTTP/1.1 200 OK\r\nContent-Length: 31\r\n\r\n"
         b"HTTP/1.1 200 OK\r\nX-Extra: 1\r\n\r\n", "ok", body=b"", forbid=(b"X-Extra",),
         keep_open=True, method="HEAD"),
    Resp("204_with_body",
         b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
         b"EXTRA", "ok204", forbid=(b"EXTRA",), keep_open=True),
    Resp("304_with_body",
         b"HTTP/1.1 304 Not Modified\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
         b"EXTRA", "ok304", forbid=(b"EXTRA",), keep_open=True),
]


@pytest.mark.parametrize("mode,probe", [
    pytest.param(mode, probe, id=f"{mode}-{probe.name}")
    for probe in RESPONSE_PROBES for mode in ("rev", "flow", "reg")])
def test_response(proxies, origin, mode, probe: Resp):
    proxy = proxies[mode]
    marker = f"m{next(_counter)}x"
    key = f"{probe.name}-{marker}"
    origin.raw[key] = (probe.raw, "keep-open") if probe.keep_open else probe.raw
    problems: list[str] = []
    path = f"/raw/{key}".encode()
    expect = probe.expect
    if expect == "close_or_502" and mode == "flow" and probe.name != "short_body_then_close":
        expect = "502"  # the body is gathered before anything is sent: nothing was sent
    mark = origin.mark()
    with StrictClient(proxy.port, timeout=probe.timeout) as c:
        c.send(probe.method.encode() + b" " + proxy.prefix + path +
               b" HTTP/1.1\r\nHost: x\r\n\r\n")
        if expect == "until_close":
            data, closed = c.read_raw_until_close()
            problem = check_until_close(data, closed, probe.body)
            if problem:
                problems.append(f"(b) client: expected 200 and exactly {probe.body!r} (the "
                                f"upstream body read until close, not chunked-decoded): "
                                f"{problem}; got closed={closed} {data[:400]!r}")
        else:
            r = c.response(method=probe.method)
            raw = r.raw + c.pending
            if expect == "502":
                check_error_response(r, (502,), problems, "bad upstream answer")
            elif expect == "close_or_502":
                if r.status == 502:
                    check_error_response(r, (502,), problems, "bad upstream answer")
                elif r.error is None:
                    problems.append(f"(b) client: a complete {r.status} response was delivered "
                                    f"for a broken upstream message: {r!r}")
                elif r.error == "timeout":
                    problems.append(f"(b) client: no answer and no close within "
                                    f"{probe.timeout}s: {r!r}")
            else:
                status = int(expect[2:]) if expect[2:] else 200
                if r.status != status or r.body != probe.body:
                    problems.append(f"(b) client: expected {status} {probe.body!r}, got {r!r}")
            if r.error == "timeout" and expect != "close_or_502":
                problems[-1:] = [problems[-1] + f" (nothing within {probe.timeout}s)"] \
                    if problems else [f"(b) client: timeout {r!r}"]
            for word in probe.forbid:
                if word in raw:
                    problems.append(f"(b) client: received the upstream's raw bytes {word!r}: "
                                    f"{raw[:400]!r}")
    time.sleep(0.02)
    view = origin.since(mark)
    targets = [req.target for req in view.requests]
    if (targets != [path] and not (probe.retry_ok and targets == [path, path])) or view.errors:
        problems.append(f"(a) origin: expected one {probe.method} {path!r}, got {targets} "
                        f"errors={view.errors}")
    follow_up(proxy, origin, marker, problems)
    assert not problems, "\n".join(problems)


def check_until_close(data: bytes, closed: bool, expected: bytes) -> str | None:
    """The client got `expected` as the body, however the proxy framed it (its own
    Content-Length, chunked, or until close); or a 502 (refusing is safe too)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 502 "):
        return None
    if not sep or not head.startswith(b"HTTP/1.1 200"):
        return "no 200 head"
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields.setdefault(name.strip().lower(), []).append(value.strip().lower())
    te = b",".join(fields.get(b"transfer-encoding", []))
    if b"content-length" in fields and te:
        return "both Content-Length and Transfer-Encoding"
    if b"content-length" in fields:
        n = int(fields[b"content-length"][0])
        return None if rest[:n] == expected and len(rest) >= n else "Content-Length body differs"
    if te.split(b",")[-1].strip() == b"chunked":
        body, pos = b"", 0
        while True:
            line_end = rest.find(b"\r\n", pos)
            if line_end < 0:
                return "incomplete chunked body"
            size = int(rest[pos:line_end].split(b";")[0], 16)
            if size == 0:
                break
            body += rest[line_end + 2:line_end + 2 + size]
            pos = line_end + 2 + size + 2
        return None if body == expected else "chunked body differs"
    if not closed:
        return "close-delimited body but the connection stayed open"
    return None if rest == expected else "close-delimited body differs"


# -- probes with their own steps -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["rev", "flow", "reg"])
def test_expect_100_continue(proxies, origin, mode):
    """The head alone, then the body once a 100 Continue came (from the proxy or relayed
    from the origin); the origin gets one request with the body."""
    proxy = proxies[mode]
    marker = f"m{next(_counter)}x".encode()
    problems: list[str] = []
    mark = origin.mark()
    with StrictClient(proxy.port) as c:
        c.send(subst(H(POST, HOST, b"Expect: 100-continue", b"Content-Length: 5"), proxy,
                     marker))
        first = c.read_head(timeout=2.0)
        if first is None or not first.startswith(b"HTTP/1.1 100"):
            problems.append(f"(b) client: no 100 Continue within 2 s: {first!r} {c.pending!r}")
            c.pending = (first or b"") + c.pending
        c.send(b"hello")
        r = c.response(method="POST")
        if r.status != 200 or r.body != b"ok:/p-" + marker:
            problems.append(f"(b) client: expected 200 ok:/p-{marker.decode()}, got {r!r}")
    probe = Req("expect", b"", "accept", method=b"POST", body=b"hello")
    check_origin_accepted(origin.since(mark), probe, marker, problems)
    follow_up(proxy, origin, marker.decode(), problems)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("proxy_connection", [True, False], ids=["proxy-connection-close",
                                                                  "plain"])
def test_connect_then_plain_http(proxies, origin, proxy_connection):
    """Issue finding 6: CONNECT (with `Proxy-Connection: close`) then plain HTTP inside the
    tunnel gets the origin's response, not the CONNECT parser's leftover state."""
    proxy = proxies["reg"]
    marker = f"m{next(_counter)}x"
    problems: list[str] = []
    authority = origin.authority.encode()
    extra = b"Proxy-Connection: close\r\n" if proxy_connection else b""
    mark = origin.mark()
    with StrictClient(proxy.port) as c:
        c.send(b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n" + extra
               + b"\r\n")
        head = c.read_head()
        if head is None or not head.startswith(b"HTTP/1.1 200"):
            problems.append(f"(b) client: CONNECT answered {head!r} {c.pending!r}")
        else:
            path = f"/tunnel-{marker}".encode()
            c.send(b"GET " + path + b" HTTP/1.1\r\nHost: " + authority + b"\r\n\r\n")
            r = c.response()
            if r.status != 200 or r.body != b"ok:" + path:
                problems.append(f"(b) client: inside the tunnel expected 200 "
                                f"{b'ok:' + path!r}, got {r!r}")
            view = origin.since(mark)
            if [req.target for req in view.requests] != [path] or view.errors:
                problems.append(f"(a) origin: expected one GET {path!r}, got "
                                f"{[req.target for req in view.requests]} {view.errors}")
    follow_up(proxy, origin, marker, problems)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("mode", ["rev", "flow", "reg"])
def test_unsolicited_101_is_not_a_tunnel(proxies, origin, mode):
    """A 101 to a request that asked for no upgrade is a bad response (502); what the
    client sends next never reaches the origin as raw tunnel bytes."""
    proxy = proxies[mode]
    marker = f"m{next(_counter)}x"
    key = f"unsolicited101-{marker}"
    origin.raw[key] = (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                       b"Upgrade: foo\r\n\r\nTUNNEL-FROM-ORIGIN")
    problems: list[str] = []
    mark = origin.mark()
    with StrictClient(proxy.port) as c:
        c.send(b"GET " + proxy.prefix + f"/raw/{key}".encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.response()
        check_error_response(r, (502,), problems, "bad upstream answer")
        if b"TUNNEL-FROM-ORIGIN" in r.raw + c.pending:
            problems.append(f"(b) client: got the origin's post-101 bytes: {r.raw!r}")
        c.send(f"TUNNEL-FROM-CLIENT-{marker}\r\n\r\n".encode())
        c.closed_after(0.5)
    time.sleep(0.05)
    view = origin.since(mark)
    if f"TUNNEL-FROM-CLIENT-{marker}".encode() in view.all_bytes:
        problems.append(f"(a) origin: the client's bytes after the 101 were relayed as a "
                        f"tunnel: {list(view.data.values())!r}")
    follow_up(proxy, origin, marker, problems)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("mode", ["rev", "flow", "reg"])
def test_h2c_upgrade_answered_101(proxies, origin, mode):
    """An h2c upgrade request must not switch: the origin never sees h2c, and a 101 it
    sends anyway is a bad response (502), or the request was refused (400)."""
    proxy = proxies[mode]
    marker = f"m{next(_counter)}x"
    key = f"upgrade101-{marker}"
    origin.raw[key] = (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                       b"Upgrade: h2c\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    problems: list[str] = []
    mark = origin.mark()
    with StrictClient(proxy.port) as c:
        c.send(b"GET " + proxy.prefix + f"/raw/{key}".encode() + b" HTTP/1.1\r\nHost: x\r\n"
               b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
               b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
        r = c.response()
        check_error_response(r, (400, 502), problems, "refusal or bad upstream answer")
    time.sleep(0.02)
    view = origin.since(mark)
    if b"h2c" in view.all_bytes.lower() or b"http2-settings" in view.all_bytes.lower():
        problems.append(f"(a) origin: received the h2c upgrade: {list(view.data.values())!r}")
    follow_up(proxy, origin, marker, problems)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("mode", ["rev", "flow", "reg"])
def test_pipelined_good_requests(proxies, origin, mode):
    """Control: two good requests in one write are answered in order, each its own."""
    proxy = proxies[mode]
    marker = f"m{next(_counter)}x"
    problems: list[str] = []
    paths = [f"/pipe-{marker}-{i}".encode() for i in range(2)]
    with StrictClient(proxy.port) as c:
        c.send(b"".join(b"GET " + proxy.prefix + p + b" HTTP/1.1\r\nHost: x\r\n\r\n"
                        for p in paths))
        for p in paths:
            r = c.response()
            if r.status != 200 or r.body != b"ok:" + p:
                problems.append(f"(b) client: expected 200 {b'ok:' + p!r}, got {r!r}")
                break
    follow_up(proxy, origin, marker, problems)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("mode", ["rev", "flow", "reg"])
def test_pipelined_after_connection_close(proxies, origin, mode):
    """A request pipelined after one with `Connection: close` is never served: the origin
    gets only the first, the client one response and then the close."""
    proxy = proxies[mode]
    marker = f"m{next(_counter)}x"
    problems: list[str] = []
    first, second = f"/p-{marker}".encode(), f"/pipelined-{marker}".encode()
    mark = origin.mark()
    with StrictClient(proxy.port) as c:
        c.send(b"GET " + proxy.prefix + first + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
               b"GET " + proxy.prefix + second + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.response()
        if r.status != 200 or r.body != b"ok:" + first:
            problems.append(f"(b) client: expected 200 {b'ok:' + first!r}, got {r!r}")
        closed, extra = c.closed_after()
        if extra or not closed:
            problems.append(f"(b) client: after the Connection: close response: closed={closed} "
                            f"extra={extra[:300]!r}")
    time.sleep(0.02)
    view = origin.since(mark)
    if second in view.all_bytes:
        problems.append(f"(a) origin: received the request pipelined after Connection: close: "
                        f"{list(view.data.values())!r}")
    follow_up(proxy, origin, marker, problems)
    assert not problems, "\n".join(problems)
