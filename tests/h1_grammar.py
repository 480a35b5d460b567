"""HTTP/1 messages for differential testing: a grammar that mixes valid and hostile pieces,
and the property every `fastproxy._core.HTTP1Reader` result must satisfy against h11.

Shared by tests/test_h1_differential.py (hypothesis), tests/test_h1_fuzz_smoke.py and
fuzz/fuzz_h1_reader.py (atheris). Each generated message comes with `invalid`: the reasons
(if any) it holds a piece RFC 9112 forbids and a strict reader must refuse.

The property (`check`):
1. Feeding the bytes whole and split at any points gives the same outcome (heads, bodies
   of the messages that ended, and whether it ended in a ProtocolError).
2. Whenever the reader accepts the first head, h11 accepts it too and agrees on the
   method/target/version or status/reason/version, the fields (names and values, in order)
   and the framing (Content-Length, chunked); when the reader ends the first message, h11
   ends it too with the same (decoded) body.
3. A message with a piece listed in `invalid` is refused (ProtocolError).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h11
from fastproxy._core import (
    BODY,
    CLOSED,
    END,
    HEAD,
    NEED_DATA,
    HTTP1Reader,
    ProtocolError,
)

# h11 refuses these for reasons of its own (what it supports, not HTTP/1 syntax): when h11
# says so, the comparison for that message is skipped.
H11_LIMITS = (
    "Missing mandatory Host: header",  # h11 wants Host on every HTTP/1.1 request
    "Only Transfer-Encoding: chunked is supported",  # RFC allows e.g. "gzip, chunked"
    "multiple Transfer-Encoding headers",  # RFC 9110 §5.3 allows a field split in lines
    "Received server _SWITCH_UPGRADE event without a pending proposal",
)

# -- the pieces --------------------------------------------------------------------------
# Each list holds (bytes, reason it is invalid or None).

GOOD_METHODS = [b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH",
                b"M-SEARCH", b"X-CUSTOM", b"get", b"PURGE"]
BAD_METHODS = [(b"G ET", "space in method"), (b"GE\tT", "tab in method"),
               (b"GET\x00", "NUL in method"), (b"G\xffT", "non-token method"),
               (b"GE@T", "non-token method"), (b"", "empty method")]
GOOD_TARGETS = [b"/", b"/a/b?c=d&e", b"*", b"http://example.com/x?y", b"/a#frag",
                b"//double", b"/%41%zz", b"/~!$&'()*+,;=:@"]
BAD_TARGETS = [(b"/a b", "space in target"), (b"/\x00", "NUL in target"),
               (b"/\xce\xb4", "non-ASCII target"), (b"/\x7f", "DEL in target"),
               (b"/\t", "tab in target")]
GOOD_VERSIONS = [b"HTTP/1.1", b"HTTP/1.0"]
BAD_VERSIONS = [(b"", "no HTTP version"), (b"http/1.1", "lowercase version"),
                (b"HTTP/11", "malformed version"), (b"ICE/1.0", "not HTTP"),
                (b"RTSP/1.0", "not HTTP"), (b"HTTP/1.1 ", "space after version"),
                (b"HTTP/1", "malformed version"), (b"HTTP/1.1\x00", "NUL after version")]
LINE_ENDS = [(b"\n", "bare LF"), (b"\r", "bare CR"), (b"\r\r\n", "bare CR")]

GOOD_NAMES = [b"Host", b"X-A", b"Accept", b"User-Agent", b"x_under", b"X-Long-Name-1",
              b"Cookie", b"Via", b"Expect", b"Trailer", b"te", b"Keep-Alive"]
BAD_NAMES = [(b"X A", "space in field name"), (b"X\x00", "NUL in field name"),
             (b"", "empty field name"), (b" X", "whitespace before field name"),
             (b"X\t", "whitespace before colon"), (b"X ", "whitespace before colon"),
             (b"X@", "non-token field name"), (b"\xffX", "non-token field name"),
             (b"X\x7f", "non-token field name"), (b"X\"", "non-token field name")]
GOOD_VALUES = [b"", b"a", b"text/html; charset=utf-8", b"  padded  ", b"\ttabbed\t",
               b"a\tb c", b"\x80\xff obs-text", b"q=\"quoted, value\"", b"*/*",
               b"close-ish", b"1, 2, 3"]
BAD_VALUES = [(b"a\x00b", "NUL in value"), (b"a\x01", "CTL in value"),
              (b"\x0cff", "CTL in value"), (b"a\x7f", "DEL in value"),
              (b"a\rb", "bare CR"), (b"a\nb", "bare LF"), (b"a\x1b[0m", "CTL in value")]
OBS_FOLDS = [b"\r\n folded", b"\r\n\tfolded", b"\r\n  "]

CL_GOOD = [b"0", b"5", b"005", b"12"]
CL_BAD = [(b"-1", "Content-Length not digits"), (b"+5", "Content-Length not digits"),
          (b"5 5", "Content-Length not digits"), (b"0x5", "Content-Length not digits"),
          (b"", "empty Content-Length"), (b"5, 5", "Content-Length not digits"),
          (b"5,6", "Content-Length not digits"), (b"99999999999999999999999",
                                                  "Content-Length overflow"),
          (b"\xd9\xa5", "Content-Length not digits")]
TE_CHUNKED = [b"chunked", b"Chunked", b"CHUNKED", b"gzip, chunked", b"gzip,chunked",
              b"chunked "]
TE_NOT_CHUNKED = [b"chunked, gzip", b"identity", b"gzip", b"chunkedchunked", b"",
                  b"chunked;q=1", b"x-chunked"]

# (BWS before ";" is valid too, but h11 cannot read it, so it is not generated.)
CHUNK_EXT_GOOD = [b"", b";a", b";a=b", b';a="q v"', b";a;b=c", b";a=\"x\\\"y\""]
CHUNK_EXT_BAD = [(b";", "empty chunk extension"), (b";=b", "empty chunk extension name"),
                 (b";a=\"open", "unbalanced quote in chunk extension"),
                 (b" x", "chunk extension without ;"), (b"x", "bad chunk size"),
                 (b";a\x00", "NUL in chunk extension"), (b" ", "space after chunk size"),
                 (b";a=", "empty chunk extension value")]
TRAILERS_GOOD = [b"", b"X-T: v\r\n", b"X-T: v\r\nY: w\r\n"]
TRAILERS_BAD = [(b"no colon\r\n", "trailer without colon"),
                (b"X-T: v\n", "bare LF in trailer"), (b"X T: v\r\n", "space in trailer name"),
                (b" X: v\r\n", "whitespace before trailer")]

GOOD_STATUS = [b"200", b"201", b"204", b"206", b"301", b"304", b"404", b"500", b"599",
               b"999", b"100", b"103", b"299"]
BAD_STATUS = [(b"99", "status not 3 digits"), (b"1000", "status not 3 digits"),
              (b"abc", "status not 3 digits"), (b"099", "status < 100"),
              (b"000", "status < 100"), (b" 200", "double space in status line"),
              (b"2 0", "status not 3 digits"), (b"", "empty status")]
GOOD_REASONS = [b" OK", b" Not Found", b"", b" ", b" Ori\xebntatie", b" a\tb", b" two  spaces"]
BAD_REASONS = [(b" O\x00K", "NUL in reason"), (b" O\x01K", "CTL in reason"),
               (b"OK", "no space after status")]


@dataclass
class Message:
    raw: bytes
    invalid: list[str] = field(default_factory=list)
    is_request: bool = True

    def __repr__(self) -> str:
        return f"Message({self.raw!r}, invalid={self.invalid})"


class Builder:
    """Builds a message from choices drawn by `pick(options)` / `chance(p)` / `number(a, b)`,
    which hypothesis or a fuzzer's bytes provide."""

    def __init__(self, pick, chance, number, hostile: float = 1.0) -> None:
        self.pick = pick
        self.chance = chance
        self.number = number
        self.hostile = hostile
        """Scales the odds of every invalid piece: 0 builds only valid messages."""
        self.invalid: list[str] = []

    def bad(self, p: float) -> bool:
        """Whether to put an invalid piece here (odds p, scaled by `hostile`)."""
        return self.hostile > 0 and self.chance(p * self.hostile)

    def choose(self, good: list[bytes], bad: list[tuple[bytes, str]], p_bad: float) -> bytes:
        if bad and self.bad(p_bad):
            value, reason = self.pick(bad)
            self.invalid.append(reason)
            return value
        return self.pick(good)

    def eol(self) -> bytes:
        if self.bad(0.03):
            value, reason = self.pick(LINE_ENDS)
            self.invalid.append(reason)
            return value
        return b"\r\n"

    def sp(self) -> bytes:
        if self.bad(0.03):
            self.invalid.append("double space in start line")
            return b"  "
        if self.bad(0.02):
            self.invalid.append("tab in start line")
            return b"\t"
        return b" "

    def fields(self, is_request: bool, version: bytes) -> tuple[bytes, str | None]:
        """The header section (without the final CRLF) and the framing ("cl:<n>",
        "chunked", "close") a strict reader should take from it."""
        lines: list[bytes] = []
        if is_request and version == b"HTTP/1.1" and not self.chance(0.05):
            lines.append(b"Host: example.com")
        for _ in range(self.number(0, 4)):
            name = self.choose(GOOD_NAMES, BAD_NAMES, 0.08)
            if name.lower() == b"host" and is_request:
                name = b"X-Host"
            sep = self.pick([b":", b": ", b":\t", b":  "])
            value = self.choose(GOOD_VALUES, BAD_VALUES, 0.08)
            if self.bad(0.04):
                value += self.pick(OBS_FOLDS)
                self.invalid.append("obs-fold")
            lines.append(name + sep + value)
        framing = None
        cl = te = None
        if self.chance(0.35):
            cl = self.choose(CL_GOOD, CL_BAD, 0.2)
            lines.append(self.pick([b"Content-Length", b"content-length"]) + b": " + cl)
            if self.chance(0.1):
                other = self.pick(CL_GOOD) if self.bad(0.5) else cl
                lines.append(b"Content-Length: " + other)
                if other.lstrip(b"0") != cl.lstrip(b"0") or not cl.isdigit():
                    self.invalid.append("Content-Length repeated with another value")
        te_allowed = cl is None and not (is_request and version == b"HTTP/1.0")
        if self.chance(0.35) and (te_allowed or self.bad(0.5)):
            if is_request and self.bad(0.2):
                te = self.pick(TE_NOT_CHUNKED)
                self.invalid.append("request Transfer-Encoding not ending in chunked")
            elif not is_request and self.chance(0.2):
                te = self.pick(TE_NOT_CHUNKED)  # read until close (RFC 9112 §6.3)
            else:
                te = self.pick(TE_CHUNKED)
            lines.append(self.pick([b"Transfer-Encoding", b"transfer-encoding"]) + b": " + te)
            if is_request and version == b"HTTP/1.0":
                self.invalid.append("Transfer-Encoding on an HTTP/1.0 request")
        if cl is not None and te is not None and is_request:
            self.invalid.append("both Transfer-Encoding and Content-Length")
        if self.chance(0.08):
            token = self.pick([b"close, te", b"keep-alive", b"close", b"upgrade"])
            if is_request and self.bad(0.3):
                token = self.pick([b"content-length", b"Transfer-Encoding", b"close, te"])
            lines.append(b"Connection: " + token)
            if is_request and token.lower() in (b"content-length", b"transfer-encoding"):
                self.invalid.append("Connection lists a framing field")
        if lines and self.chance(0.3):  # shuffle one line to another place
            i, j = self.number(0, len(lines) - 1), self.number(0, len(lines) - 1)
            lines[i], lines[j] = lines[j], lines[i]
        if te is not None:
            final = te.lower().strip().rsplit(b",", 1)[-1].strip()
            framing = "chunked" if final == b"chunked" else "close"
        elif cl is not None and cl.isdigit() and len(cl) < 19:
            framing = f"cl:{int(cl)}"
        return b"".join(line + self.eol() for line in lines), framing

    def chunked_body(self, body_counts: bool) -> bytes:
        out = b""
        for _ in range(self.number(0, 3)):
            size = self.number(1, 12)
            digits = self.pick([b"%x", b"%X", b"00%x"]) % size
            if body_counts and self.bad(0.03):
                digits = b"f" * self.number(17, 24)
                self.invalid.append("chunk size overflow")
            ext = self.choose(CHUNK_EXT_GOOD, CHUNK_EXT_BAD, 0.15 if body_counts else 0.0)
            out += digits + ext + b"\r\n" + bytes(range(97, 97 + size)) + b"\r\n"
        last_ext = self.choose(CHUNK_EXT_GOOD, CHUNK_EXT_BAD, 0.1 if body_counts else 0.0)
        trailers = self.choose(TRAILERS_GOOD, TRAILERS_BAD, 0.2 if body_counts else 0.0)
        return out + self.pick([b"0", b"000"]) + last_ext + b"\r\n" + trailers + b"\r\n"

    def request(self) -> Message:
        method = self.choose(GOOD_METHODS, BAD_METHODS, 0.05)
        target = self.choose(GOOD_TARGETS, BAD_TARGETS, 0.05)
        version = self.choose(GOOD_VERSIONS, BAD_VERSIONS, 0.06)
        start = method + self.sp() + target
        if version:
            start += self.sp() + version
        elif self.chance(0.5):
            start += b" "
        head_fields, framing = self.fields(True, version)
        raw = start + self.eol() + head_fields + b"\r\n"
        raw += self.body(framing, body_counts=not self.invalid)
        return Message(raw, self.invalid, True)

    def response(self) -> Message:
        version = self.choose(GOOD_VERSIONS, BAD_VERSIONS[1:], 0.05)
        status = self.choose(GOOD_STATUS, BAD_STATUS, 0.06)
        reason = self.choose(GOOD_REASONS, BAD_REASONS, 0.05)
        start = version + b" " + status + reason
        head_fields, framing = self.fields(False, version)
        raw = start + self.eol() + head_fields + b"\r\n"
        has_body = status.isdigit() and len(status) == 3 and status[:1] not in b"01" \
            and status not in (b"204", b"304")
        if not has_body:
            framing = None
        raw += self.body(framing, body_counts=not self.invalid and has_body)
        return Message(raw, self.invalid, False)

    def body(self, framing: str | None, body_counts: bool) -> bytes:
        if framing == "chunked":
            return self.chunked_body(body_counts)
        if framing is not None and framing.startswith("cl:"):
            return bytes(range(65, 65 + int(framing[3:]) % 26)) + b"Z" * max(
                0, int(framing[3:]) - 26)
        if framing == "close":
            return b"until close"
        return b""


# -- running the reader ------------------------------------------------------------------

@dataclass
class Outcome:
    heads: list[tuple]
    bodies: list[bytes]  # decoded bodies of the messages that ended (END)
    error: str | None  # the ProtocolError that stopped the reader, if one did

    def key(self):
        return self.heads, self.bodies, self.error is not None


def head_tuple(head) -> tuple:
    start = (head.method, head.target) if head.method is not None else (
        head.status_code, head.reason)
    return (start, head.version, tuple(head.fields), head.content_length, bool(head.chunked))


def run_reader(pieces: list[bytes], is_request: bool) -> Outcome:
    reader = HTTP1Reader(is_request)
    reader.decode = True
    if not is_request:
        reader.expect_response_to(b"GET")
    heads: list[tuple] = []
    bodies: list[bytes] = []
    body = bytearray()
    try:
        for piece in pieces + [None]:
            if piece is None:
                reader.feed_eof()
            else:
                reader.feed(piece)
            for _ in range(100_000):
                event = reader.next_event()
                if event == NEED_DATA or event == CLOSED:
                    break
                if event == HEAD:
                    heads.append(head_tuple(reader.head))
                    body.clear()
                elif event == BODY:
                    body.extend(reader.chunk or b"")
                elif event == END:
                    bodies.append(bytes(body))
                    body.clear()
                    if len(heads) > 8:
                        return Outcome(heads, bodies, None)
            else:
                raise AssertionError("reader did not stop producing events")
            if event == CLOSED:
                break
    except ProtocolError as e:
        return Outcome(heads, bodies, str(e) or "ProtocolError")
    return Outcome(heads, bodies, None)


def split(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(raw)) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(raw)]:
        if p > last:
            pieces.append(raw[last:p])
            last = p
    return pieces


# -- h11's view --------------------------------------------------------------------------

class H11Limit(Exception):
    """h11 refused for a reason of its own (`H11_LIMITS`)."""


def h11_first_message(raw: bytes, is_request: bool):
    """(head event, decoded body or None when h11 did not end the message), or
    h11.RemoteProtocolError / H11Limit raised."""
    conn = h11.Connection(h11.SERVER if is_request else h11.CLIENT)
    if not is_request:
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "example.com")]))
        conn.send(h11.EndOfMessage())
    if is_request:
        while raw.startswith(b"\r\n"):  # RFC 9112 §2.2 lets a server skip these; h11 does not
            raw = raw[2:]
    conn.receive_data(raw)
    conn.receive_data(b"")
    head, body = None, bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as e:
            if any(limit in str(e) for limit in H11_LIMITS):
                raise H11Limit(str(e)) from None
            if head is not None:
                return head, None  # the head was fine, the body was not / ended early
            raise
        if isinstance(event, (h11.Request, h11.Response, h11.InformationalResponse)):
            head = event
            if isinstance(event, h11.InformationalResponse):
                return head, b""
        elif isinstance(event, h11.Data):
            body.extend(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return head, bytes(body)
        else:  # NEED_DATA, PAUSED, ConnectionClosed
            return head, None


FRAMING_FIELDS = (b"content-length", b"transfer-encoding")


def compare_with_h11(msg: Message, outcome: Outcome) -> None:
    """Property 2 (see the module docstring)."""
    if not outcome.heads:
        return
    try:
        head_event, h11_body = h11_first_message(msg.raw, msg.is_request)
    except H11Limit:
        return
    except h11.RemoteProtocolError as e:
        raise AssertionError(f"HTTP1Reader accepted a head h11 refuses ({e}): {msg!r}\n"
                             f"reader: {outcome.heads[0]!r}") from None
    assert head_event is not None, f"h11 saw no head: {msg!r}"
    (start, version, fields, content_length, chunked) = outcome.heads[0]
    where = f"\n{msg!r}\nreader: {outcome.heads[0]!r}\nh11: {head_event!r}"
    if msg.is_request:
        assert start == (head_event.method, head_event.target), "start line" + where
    else:
        assert start[0] == head_event.status_code, "status" + where
        assert start[1] == head_event.reason, "reason" + where
    assert version == b"HTTP/" + head_event.http_version, "version" + where
    mine = [(n, v) for n, v in fields if n.lower() not in FRAMING_FIELDS]
    theirs = [(n, v) for n, v in head_event.headers.raw_items()
              if n.lower() not in FRAMING_FIELDS]
    assert mine == theirs, "fields" + where
    h11_cl = [v for n, v in head_event.headers.raw_items() if n.lower() == b"content-length"]
    h11_te = [v for n, v in head_event.headers.raw_items()
              if n.lower() == b"transfer-encoding"]
    assert bool(chunked) == bool(h11_te), "chunked" + where
    if h11_cl and not h11_te:
        assert content_length == int(h11_cl[0]), "Content-Length" + where
    elif not h11_te:
        assert content_length == -1, "Content-Length" + where
    if len(outcome.bodies) >= 1 and not isinstance(head_event, h11.InformationalResponse):
        assert h11_body is not None, "the reader ended a message h11 did not" + where
        assert outcome.bodies[0] == h11_body, "body" + where


def check(msg: Message, cuts: list[int]) -> Outcome:
    """Properties 1-3 for one message and one way of splitting it."""
    whole = run_reader([msg.raw], msg.is_request)
    pieces = split(msg.raw, cuts)
    parts = run_reader(pieces, msg.is_request)
    assert whole.key() == parts.key(), (
        f"whole and split feeding differ\n{msg!r}\npieces: {pieces!r}\n"
        f"whole: {whole!r}\nsplit: {parts!r}")
    compare_with_h11(msg, whole)
    if msg.invalid:
        first_ok = len(whole.bodies) >= 1
        assert whole.error is not None and not first_ok, (
            f"HTTP1Reader accepted a message with {msg.invalid}: {msg!r}\nreader: {whole!r}")
    return whole
