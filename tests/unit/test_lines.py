"""Bounded line reading: lines over the cap are measured and skipped, whatever the chunking."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.intake.lines import Line, read_lines


def _read(data: bytes, *, max_bytes: int = 10, chunk_bytes: int = 4) -> list[Line]:
    return list(read_lines(io.BytesIO(data), max_bytes=max_bytes, chunk_bytes=chunk_bytes))


def test_lines_are_numbered_and_split_on_newlines():
    assert _read(b"ab\n\ncdef\r\ng") == [Line(1, b"ab", 2), Line(2, b"", 0), Line(3, b"cdef\r", 5), Line(4, b"g", 1)]


def test_a_line_over_the_cap_is_measured_not_kept():
    assert _read(b"short\n" + b"x" * 25 + b"\nok\n") == [
        Line(1, b"short", 5), Line(2, None, 25), Line(3, b"ok", 2)]
    assert _read(b"x" * 11) == [Line(1, None, 11)]
    assert _read(b"x" * 10) == [Line(1, b"x" * 10, 10)]


def test_only_a_leading_byte_order_mark_is_dropped():
    assert _read(b"\xef\xbb\xbfa\n\xef\xbb\xbfb", chunk_bytes=64) == [Line(1, b"a", 1), Line(2, b"\xef\xbb\xbfb", 4)]


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 7, 64])
def test_undecodable_bytes_stay_in_their_own_line(chunk_bytes):
    lines = _read(b"good\n\xff\xfe\nfine\n", chunk_bytes=chunk_bytes)
    assert [line.data for line in lines] == [b"good", b"\xff\xfe", b"fine"]


@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=8),
       st.integers(min_value=1, max_value=40), st.integers(min_value=1, max_value=20))
def test_any_chunking_gives_the_same_lines_as_split(pieces, max_bytes, chunk_bytes):
    data = b"\n".join(pieces)
    expected = [Line(n, piece if len(piece) <= max_bytes else None, len(piece))
                for n, piece in enumerate(data.split(b"\n"), start=1)]
    if expected and expected[-1].size == 0:
        expected.pop()  # no line after a final newline
    if data.startswith(b"\xef\xbb\xbf"):
        return  # covered above
    assert _read(data, max_bytes=max_bytes, chunk_bytes=chunk_bytes) == expected
