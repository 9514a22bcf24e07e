"""Issue 13.2: one bad line never ends an ingest. Each construct below crashed `signals ingest` (on one
backend or both) or was stored by SQLite and refused by PostgreSQL; now each is a one-line rejection
naming the field, the same on both databases, and the lines around it are stored."""

from __future__ import annotations

import json
import re
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.conftest import create_database, drop_database
from tests.engine.ingest_files import IngestDatabase, line, signal

ACCEPTED = re.compile(r"accepted signal \d+")
RANGE_64 = "(-9223372036854775808 to 9223372036854775807)"


@pytest.fixture(scope="module")
def database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestDatabase]:
    # Its own database: the CLI commits, and the shared test database must stay empty.
    work_dir = tmp_path_factory.mktemp(f"bad-input-{backend}")
    url = create_database(backend, work_dir)
    yield IngestDatabase(url, work_dir)
    drop_database(url)


def _with_payload_text(text: str) -> bytes:
    return json.dumps(signal()).replace('"payload": {', f'"payload": {{"value": {text}, ', 1).encode()


BAD_LINES = [
    # NUL: PostgreSQL raised an uncaught DataError and the rest of the file was never read.
    ("nul-in-payload", line(payload={"note": "a\x00b"}), "payload.note: contains a NUL character"),
    ("nul-in-dedupe-key", line(dedupe_key="key\x00"), "dedupe_key: contains a NUL character"),
    ("nul-in-type", line(type="product.usage\x00"), "type: contains a NUL character"),
    ("nul-in-domain", line(account={"domain": "acme\x00.example"}), "account.domain: contains a NUL character"),
    ("nul-in-external-id", line(account={"source": "salesforce", "external_id": "001\x00"}),
     "account.external_id: contains a NUL character"),
    ("nul-in-deal-source", line(deal={"source": "sf\x00", "external_id": "006"}),
     "deal.source: contains a NUL character"),
    ("nul-in-payload-key", line(payload={"no\x00te": 1}), 'payload."no\\u0000te": the name contains a NUL character'),
    ("nul-deep-in-payload", line(payload={"items": [1, {"note": "\x00"}]}),
     "payload.items[1].note: contains a NUL character"),
    # Numbers PostgreSQL JSON refuses, or Python cannot read.
    ("nan", _with_payload_text("NaN"), "payload.value: is NaN; only finite numbers can be stored"),
    ("infinity", _with_payload_text("Infinity"), "payload.value: is Infinity; only finite numbers can be stored"),
    ("minus-infinity", _with_payload_text("-Infinity"),
     "payload.value: is -Infinity; only finite numbers can be stored"),
    ("1e400", _with_payload_text("1e400"), "payload.value: is a number beyond the floating-point range (1e400)"),
    ("5000-digit-integer", _with_payload_text("9" * 5000),
     f"payload.value: is an integer of 5000 digits, beyond the 64-bit range {RANGE_64}"),
    ("integer-beyond-64-bits", line(payload={"value": 2**64}),
     f"payload.value: is an integer beyond the 64-bit range {RANGE_64}"),
    # Lone surrogates: valid JSON escapes, not valid Unicode.
    ("surrogate-in-payload", line(payload={"note": "\ud800"}),
     "payload.note: contains a lone surrogate (U+D800); text must be valid Unicode"),
    ("surrogate-in-dedupe-key", line(dedupe_key="k\udfff"),
     "dedupe_key: contains a lone surrogate (U+DFFF); text must be valid Unicode"),
    ("surrogate-in-domain", line(account={"domain": "\ud83d.example"}),
     "account.domain: contains a lone surrogate (U+D83D); text must be valid Unicode"),
    ("surrogate-in-deal-external-id", line(deal={"source": "salesforce", "external_id": "006\udc00"}),
     "deal.external_id: contains a lone surrogate (U+DC00); text must be valid Unicode"),
    ("surrogate-in-payload-key", line(payload={"\ud800": 1}),
     'payload."\\ud800": the name contains a lone surrogate (U+D800); text must be valid Unicode'),
    # Nesting: 30,000 levels made json.loads raise RecursionError.
    ("nesting-30000-deep", _with_payload_text("[" * 30_000 + "]" * 30_000),
     "not valid JSON: nested more than 100 levels deep"),
    ("nesting-40-deep", _with_payload_text("[" * 40 + "]" * 40), "payload: is nested more than 32 levels deep"),
    # Ids beyond INTEGER: DataError on PostgreSQL, OverflowError on SQLite past 64 bits.
    ("account-id-2**31", line(account={"id": 2**31}),
     "account.id: Must be greater than or equal to 1 and less than or equal to 2147483647."),
    ("account-id-2**63", line(account={"id": 2**63}), f"account.id: is an integer beyond the 64-bit range {RANGE_64}"),
    ("deal-id-2**31", line(deal={"id": 2**31}),
     "deal.id: Must be greater than or equal to 1 and less than or equal to 2147483647."),
    # Offsets that move the instant out of datetime's range once converted to UTC.
    ("after-year-9999", line(occurred_at="9999-12-31T23:00:00-05:00"),
     "occurred_at: is out of range once converted to UTC (years 1 to 9999)"),
    ("before-year-1", line(occurred_at="0001-01-01T00:30:00+01:00"),
     "occurred_at: is out of range once converted to UTC (years 1 to 9999)"),
    # Undecodable bytes: the text reader raised and lost the good lines of the same chunk.
    ("invalid-utf8", line(payload={"note": "caf\xe9"}).replace(b"caf\\u00e9", b"caf\xe9"),
     "not valid UTF-8: byte 0xe9 at offset "),
    ("overlong-utf8", b'{"type": "product.usage", "\xc0\xaf": 1}', "not valid UTF-8: byte 0xc0 at offset 27"),
    ("utf8-encoded-surrogate", b'{"type": "product.usage", "x": "\xed\xa0\x80"}',
     "not valid UTF-8: byte 0xed at offset 32"),
]


@pytest.mark.parametrize(("bad", "expected"),
                         [pytest.param(bad, expected, id=name) for name, bad, expected in BAD_LINES])
def test_a_bad_line_is_one_rejection_naming_the_field_and_its_neighbours_are_stored(database, bad, expected):
    before = database.signal_count()

    outcome = database.ingest_lines([line(), bad, line()])

    assert outcome.exit_code == 1, outcome.output
    assert len(outcome.report) == 3, outcome.output
    assert ACCEPTED.fullmatch(outcome.report[0].removeprefix("line 1: ")), outcome.output
    assert outcome.report[1].startswith(f"line 2: rejected: {expected}"), outcome.output
    assert ACCEPTED.fullmatch(outcome.report[2].removeprefix("line 3: ")), outcome.output
    assert database.signal_count() == before + 2


def test_a_utf16_file_is_rejected_line_by_line_without_a_traceback(database):
    text = "\n".join(json.dumps(signal()) for _ in range(3)) + "\n"

    outcome = database.ingest_bytes(text.encode("utf-16"))

    assert outcome.exit_code == 1
    assert outcome.report[0] == "line 1: rejected: not valid UTF-8: byte 0xff at offset 0"
    assert all(": rejected: not valid" in report for report in outcome.report), outcome.output


def test_a_byte_order_mark_does_not_spoil_line_one(database):
    outcome = database.ingest_bytes(b"\xef\xbb\xbf" + line() + b"\n" + line() + b"\n")

    assert outcome.exit_code == 0, outcome.output
    assert [ACCEPTED.fullmatch(report.split(": ", 1)[1]) is not None for report in outcome.report] == [True, True]


def test_a_line_over_the_cap_is_rejected_unread_and_the_lines_after_it_are_stored(database):
    huge = line(payload={"blob": "x" * 300_000})

    outcome = database.ingest_lines([line(), huge, b"", line()])

    assert outcome.report[1] == f"line 2: rejected: the signal is {len(huge)} bytes; the limit is 81920"
    assert ACCEPTED.fullmatch(outcome.report[2].removeprefix("line 4: ")), outcome.output


def _file_with_one_long_line(path, size: int) -> None:
    # The long line is a hole in a sparse file: NUL bytes on read, nothing written to disk.
    with path.open("wb") as file:
        file.write(line() + b"\n")
        file.seek(file.tell() + size)
        file.write(b"\n" + line() + b"\n")


def test_a_200_mb_line_costs_no_more_memory_than_a_2_mb_one(database, tmp_path):
    small, big = tmp_path / "2mb.jsonl", tmp_path / "200mb.jsonl"
    _file_with_one_long_line(small, 2 * 1024 * 1024)
    _file_with_one_long_line(big, 200 * 1024 * 1024)

    peaks = {}
    for name, path in [("warm-up", small), ("2 MB", small), ("200 MB", big)]:
        tracemalloc.start()
        try:
            outcome = database.ingest_file(path)
            peaks[name] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert outcome.report[1].startswith("line 2: rejected: the signal is "), outcome.output
        assert re.fullmatch(r"line 3: (accepted|duplicate of) signal \d+", outcome.report[2]), outcome.output

    # Reading the old way held the whole line (and its decoded copy): hundreds of MB for 200 MB.
    assert peaks["200 MB"] < peaks["2 MB"] + 1024 * 1024, peaks


# -- the same checks for callers that pass text or mappings (the API, connectors) -----------------

@pytest.fixture
def intake(session, settings, clock):
    from orchestrator.intake.signals import ingest

    def run(raw, source="webhook"):
        return ingest(session=session, raw=raw, source=source, now=clock.now(), settings=settings)
    return run


@pytest.mark.parametrize(("raw", "source", "field", "reason"), [
    (signal(), "s" * 41, "source", "must be 1 to 40 characters"),  # VARCHAR(40): DataError on PostgreSQL
    (signal(), "", "source", "must be 1 to 40 characters"),
    (signal(), "hub\x00spot", "source", "contains a NUL character"),
    (json.dumps(signal(payload={"note": "\ud800"}), ensure_ascii=False), "webhook", "payload.note",
     "contains a lone surrogate (U+D800); text must be valid Unicode"),  # measuring it raised UnicodeEncodeError
    (signal(payload={"at": datetime(2026, 1, 1, tzinfo=UTC)}), "webhook", "payload.at",
     "is not a JSON value (a datetime)"),
    (signal(payload={"score": float("nan")}), "webhook", "payload.score",
     "is not a finite number; NaN and Infinity cannot be stored"),
    (signal(type="product.usage\n"), "webhook", "type", 'must be dotted lowercase words, e.g. "product.usage"'),
    (signal(account={"id": 2**31}), "webhook", "account.id",
     "Must be greater than or equal to 1 and less than or equal to 2147483647."),
])
def test_text_and_mapping_callers_get_the_same_rejections(session, intake, raw, source, field, reason):
    from orchestrator.intake.signals import IntakeStatus
    from orchestrator.models import Signal

    result = intake(raw, source=source)

    assert (result.status, result.field, result.reason) == (IntakeStatus.REJECTED, field, reason)
    assert session.query(Signal).count() == 0


def test_a_huge_string_is_refused_before_it_is_encoded(intake):
    result = intake("x" * 50_000_000)
    assert result.reason == "the signal is 50000000 bytes; the limit is 81920"
