import pytest

from fastproxy import flowfilter
from fastproxy.flow import Error
from tests.test_flowfile import make_flow


@pytest.fixture
def flows():
    ok = make_flow()
    failed = make_flow(response=False, error="connect failed")
    image = make_flow(path=b"/img/logo.png")
    image.response.headers["content-type"] = "image/png"
    image.request.method = "GET"
    image.request.host = "cdn.example.org"
    missing = make_flow()
    missing.response.status_code = 404
    return {"ok": ok, "failed": failed, "image": image, "missing": missing}


@pytest.mark.parametrize("expr, expected", [
    ("~all", {"ok", "failed", "image", "missing"}),
    ("~s", {"ok", "image", "missing"}),
    ("~q", {"failed"}),
    ("~e", {"failed"}),
    ("!~e", {"ok", "image", "missing"}),
    ("~http", {"ok", "failed", "image", "missing"}),
    ("~tcp", set()),
    ("~c 404", {"missing"}),
    ("~c 200", {"ok", "image"}),
    ("~m get", {"image"}),
    ("~m POST & ~c 200", {"ok"}),
    ("~d cdn", {"image"}),
    ("~d example.com", {"ok", "failed", "missing"}),
    ("~u logo", {"image"}),
    ("logo", {"image"}),
    ("'/img/.*\\.png'", {"image"}),
    ("~t image/", {"image"}),
    ("~ts text/plain", {"ok", "missing"}),
    ("~tq form-urlencoded", {"ok", "failed", "image", "missing"}),
    ("~a", {"image"}),
    ("~h 'set-cookie: s=1'", {"ok", "image", "missing"}),
    ("~hq cookie", {"ok", "failed", "image", "missing"}),
    ("~b hello", {"ok", "image", "missing"}),
    ("~bq x=1", {"ok", "failed", "image", "missing"}),
    ("~bs hello & !~c 404", {"ok", "image"}),
    ("~c 404 | ~e", {"missing", "failed"}),
    ("!(~c 404 | ~e)", {"ok", "image"}),
    ("~s ~c 404 | ~m GET", {"missing", "image"}),  # juxtaposition is the loosest "and"
    ("!~s & !~c 200", {"failed"}),
    ("~src 127.0.0.1:50000", {"ok", "failed", "image", "missing"}),
    ("~dst example.com:80", {"ok", "failed", "image", "missing"}),
    ("~comment 'a comment'", {"ok", "failed", "image", "missing"}),
    ("~meta 'note: kept'", {"ok", "failed", "image", "missing"}),
    ("~marked", set()),
    ("~replay", set()),
])
def test_matches(flows, expr, expected):
    flt = flowfilter.parse(expr)
    assert {name for name, f in flows.items() if flt(f)} == expected
    assert flt.pattern == expr


def test_match_accepts_strings(flows):
    assert flowfilter.match("~c 200", flows["ok"])
    assert not flowfilter.match("~e", flows["ok"])


def test_killed_error_matches_e(flows):
    flows["ok"].error = Error("killed")
    assert flowfilter.match("~e", flows["ok"])


@pytest.mark.parametrize("expr", [
    "", "   ", "~nope", "~c", "~c abc", "~d", "(~s", "~s)", "~s &", "| ~s", "~u '[unclosed'",
    "'unterminated", "~c200",
])
def test_syntax_errors(expr):
    with pytest.raises(ValueError):
        flowfilter.parse(expr)
