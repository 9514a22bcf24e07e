"""Intake's fast validation path gives exactly what the marshmallow schema gives, or steps aside.

`signals._fast_load` takes a plainly well-formed signal without the schema; whatever it
accepts must load to the same data through `SignalSchema`, and whatever the schema refuses
it must leave to the schema (which words the error).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from orchestrator.intake import signals
from orchestrator.replay.samples import sample_signals

_texts = st.one_of(st.text(max_size=6), st.text(min_size=250, max_size=260), st.just(""))
_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-3, max_value=2**31 + 3), _texts,
                     st.floats(allow_nan=False), st.binary(max_size=3))
_refs = st.one_of(
    st.fixed_dictionaries({"id": _scalars}),
    st.fixed_dictionaries({"domain": _scalars}),
    st.fixed_dictionaries({"source": _scalars, "external_id": _scalars}),
    st.fixed_dictionaries({"source": _scalars}),
    st.dictionaries(st.sampled_from(["id", "domain", "source", "external_id", "other"]), _scalars, max_size=3),
    _scalars,
)
_times = st.one_of(
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))])).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["2026-10-05T13:20:00Z", "2026-10-05", "2026-10-05T13:20:00.1234567+01:00", "yesterday",
                     "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]),
    st.datetimes(timezones=st.just(UTC)),
    _scalars,
)
_payloads = st.one_of(st.dictionaries(st.text(max_size=4), _scalars, max_size=3), st.just({"x": "y" * 70_000}),
                      _scalars, st.lists(_scalars, max_size=2))


@st.composite
def _raws(draw: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    fields = {
        "type": st.one_of(st.sampled_from(["product.usage", "a.b", "Product.usage", "a", "a.b" + "c" * 100]),
                          _scalars),
        "account": _refs, "deal": _refs, "occurred_at": _times, "payload": _payloads,
        "dedupe_key": st.one_of(st.none(), _texts), "extra": _scalars,
    }
    for name, strategy in fields.items():
        if draw(st.booleans()) if name in ("deal", "dedupe_key", "payload", "extra") else draw(
                st.integers(0, 9)) > 0:
            raw[name] = draw(strategy)
    return raw


def _schema(raw: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return signals.SignalSchema().load(dict(raw))
    except ValidationError:
        return None


@hyp_settings(max_examples=400, deadline=None)
@given(raw=_raws())
def test_what_the_fast_path_accepts_loads_the_same_through_the_schema(raw):
    fast = signals._fast_load(raw)
    if fast is not None:
        assert _schema(raw) == fast


def test_the_sample_signals_take_the_fast_path_and_load_as_the_schema_loads_them():
    for sample in sample_signals():
        raw = json.loads(json.dumps(sample))
        fast = signals._fast_load(raw)
        assert fast is not None, sample
        assert fast == _schema(raw)


def test_a_datetime_object_and_a_missing_payload_load_as_the_schema_loads_them():
    raw = {"type": "product.usage", "account": {"id": 7}, "occurred_at": datetime(2026, 10, 5, tzinfo=UTC)}
    assert signals._fast_load(raw) == _schema(raw) == {**_schema(raw), "payload": {}}  # type: ignore[dict-item]


def test_anything_doubtful_is_left_to_the_schema():
    good = {"type": "product.usage", "account": {"domain": "acme.example"}, "occurred_at": "2026-10-05T13:00:00Z"}
    assert signals._fast_load(good) is not None
    for change in ({"account": {"id": True}}, {"account": {"domain": ""}}, {"occurred_at": "2026-10-05T13:00:00"},
                   {"payload": None}, {"dedupe_key": ""}, {"extra": 1}, {"type": "Product.usage"},
                   {"deal": {"id": 1, "source": "x"}}, {"account": {"source": "sf"}}):
        assert signals._fast_load({**good, **change}) is None, change
