"""Bounded line reading: JSON-lines input read as bytes in fixed chunks, each line at most a cap.

A line over the cap is measured and skipped, never held, so a 200 MB line costs what a
short one does. Lines stay bytes: each is decoded on its own, so a bad byte rejects its
line only, not the chunk around it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["CHUNK_BYTES", "Line", "read_lines"]

CHUNK_BYTES = 64 * 1024
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Line:
    """One line (1-based `number`), without its newline; `data` is None when it was over the cap."""

    number: int
    data: bytes | None
    size: int  # bytes, newline excluded


def read_lines(stream: BinaryIO, *, max_bytes: int, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Line]:
    """Every line of `stream`, holding at most `max_bytes + chunk_bytes` of it at a time."""
    number = 1
    pending = bytearray()
    skipped: int | None = None  # bytes of an over-long line seen so far; None while within the cap
    first = True
    while chunk := stream.read(chunk_bytes):
        if first:
            # Editors on Windows start UTF-8 files with a byte-order mark; it is not part of line 1.
            chunk = chunk.removeprefix(_BOM)
            first = False
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            piece = chunk[start:end]
            if skipped is not None:
                yield Line(number, None, skipped + len(piece))
                skipped = None
            elif len(pending) + len(piece) > max_bytes:
                yield Line(number, None, len(pending) + len(piece))
            else:
                pending += piece
                yield Line(number, bytes(pending), len(pending))
            pending.clear()
            number += 1
            start = end + 1
        rest = chunk[start:]
        if skipped is not None:
            skipped += len(rest)
        elif len(pending) + len(rest) > max_bytes:
            skipped = len(pending) + len(rest)
            pending.clear()
        else:
            pending += rest
    if skipped is not None:
        yield Line(number, None, skipped)
    elif pending:
        yield Line(number, bytes(pending), len(pending))
