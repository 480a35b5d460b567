import io

import pytest
from hypothesis import given, strategies as st

from fastproxy.io import tnetstring

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.binary() | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@given(values)
def test_roundtrip(value):
    assert tnetstring.loads(tnetstring.dumps(value)) == value


@pytest.mark.parametrize("value, encoded", [
    (12345, b"5:12345#"),
    ([12345, True, 0], b"19:5:12345#4:true!1:0#]"),
    (b"hello world", b"11:hello world,"),
    ("hello world", b"11:hello world;"),
    (None, b"0:~"),
    (False, b"5:false!"),
    (1.5, b"3:1.5^"),
    ((1, 2), b"8:1:1#1:2#]"),
    # mitmproxy writes a dict's items last to first.
    ({"a": 1, "b": b""}, b"15:1:b;0:,1:a;1:1#}"),
])
def test_known_encodings(value, encoded):
    assert tnetstring.dumps(value) == encoded


def test_large_bytes_are_not_mangled():
    body = bytes(range(256)) * 100
    assert tnetstring.loads(tnetstring.dumps({"content": body})) == {"content": body}


def test_subclasses_encode_as_their_base():
    import enum

    class Code(enum.IntEnum):
        OK = 200

    assert tnetstring.dumps([Code.OK]) == tnetstring.dumps([200])


def test_unserializable():
    with pytest.raises(ValueError):
        tnetstring.dumps(object())


@pytest.mark.parametrize("data", [
    b"", b"5:abc,", b"3:abc", b"3:abc?", b"x:abc,", b"3:abc,trailing", b"4:truX!",
    b"1:x#", b"1:x~", b"8:1:a;1:b}", b"12:1:a;10:xx]}",
])
def test_malformed_raises_valueerror(data):
    with pytest.raises(ValueError):
        tnetstring.loads(data)


def test_pop_returns_rest():
    assert tnetstring.pop(b"1:1#rest") == (1, b"rest")


def test_load_reads_one_value_at_a_time():
    fo = io.BytesIO(tnetstring.dumps([1]) + tnetstring.dumps({"k": "v"}))
    assert tnetstring.load(fo) == [1]
    assert tnetstring.load(fo) == {"k": "v"}
    with pytest.raises(EOFError):
        tnetstring.load(fo)


def test_read_and_skip_record_detect_torn_records():
    data = tnetstring.dumps({"k": b"x" * 100})
    for cut in (1, 3, len(data) - 1):
        with pytest.raises(ValueError):
            tnetstring.read_record(io.BytesIO(data[:cut]))
        with pytest.raises(ValueError):
            tnetstring.skip_record(io.BytesIO(data[:cut]))
    fo = io.BytesIO(data)
    assert tnetstring.skip_record(fo) is True
    assert tnetstring.skip_record(fo) is False
