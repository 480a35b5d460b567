"""Content codings: round trips, lenient deflate, errors as ValueError."""

import gzip
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastproxy.net import encoding

ALWAYS = ["identity", "none", "gzip", "x-gzip", "deflate", "deflateraw"]


@pytest.mark.parametrize("coding", ALWAYS)
@given(data=st.binary(max_size=2048))
def test_round_trip(coding: str, data: bytes) -> None:
    assert encoding.decode(encoding.encode(data, coding), coding) == data


@given(data=st.binary(min_size=1, max_size=512))
def test_chained_codings_are_undone_in_reverse(data: bytes) -> None:
    encoded = encoding.encode(data, "deflate, gzip")
    assert encoded == gzip.compress(zlib.compress(data), mtime=0)
    assert encoding.decode(encoded, "Deflate , GZIP") == data


def test_gzip_is_standard_and_deterministic() -> None:
    encoded = encoding.encode(b"hello world", "gzip")
    assert gzip.decompress(encoded) == b"hello world"
    assert encoding.encode(b"hello world", "GZIP") == encoded


def test_gzip_reads_concatenated_members() -> None:
    data = gzip.compress(b"ab") + gzip.compress(b"cd")
    assert encoding.decode(data, "gzip") == b"abcd"


def test_deflate_accepts_zlib_and_raw_data() -> None:
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw_data = raw.compress(b"payload") + raw.flush()
    assert encoding.decode(zlib.compress(b"payload"), "deflate") == b"payload"
    assert encoding.decode(raw_data, "deflate") == b"payload"
    # Fresh content is always encoded with the zlib wrapper (RFC 9110 §8.4.1.2).
    assert zlib.decompress(encoding.encode(b"new payload", "deflate")) == b"new payload"


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_empty_body_decodes_to_empty(coding: str) -> None:
    assert encoding.decode(b"", coding) == b""


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_corrupt_data_raises_value_error(coding: str) -> None:
    with pytest.raises(ValueError, match=coding):
        encoding.decode(b"definitely not compressed", coding)


def test_truncated_gzip_raises_value_error() -> None:
    with pytest.raises(ValueError, match="gzip"):
        encoding.decode(gzip.compress(b"x" * 1000)[:-10], "gzip")


def test_unknown_coding_raises_value_error() -> None:
    with pytest.raises(ValueError, match="unsupported content-encoding 'compress'"):
        encoding.decode(b"abc", "compress")
    with pytest.raises(ValueError, match="'utf-8'"):
        encoding.encode(b"abc", "utf-8")


@pytest.mark.parametrize("coding", ["br", "zstd"])
def test_optional_codings_match_their_availability(coding: str) -> None:
    """br and zstd round-trip when their module is installed, else fail clearly."""
    if coding in encoding.SUPPORTED:
        assert encoding.decode(encoding.encode(b"x" * 100, coding), coding) == b"x" * 100
        with pytest.raises(ValueError):
            encoding.decode(b"garbage!", coding)
    else:
        with pytest.raises(ValueError, match=f"unsupported content-encoding '{coding}'"):
            encoding.decode(b"abc", coding)


def test_cache_returns_original_bytes_for_unchanged_content() -> None:
    """decode then encode of the same body gives back the exact bytes that were sent."""
    sent = zlib.compress(b"body", level=1)
    assert encoding.encode(encoding.decode(sent, "deflate"), "deflate") == sent
    assert encoding.encode(b"other", "deflate") != sent
