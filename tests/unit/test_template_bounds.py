"""Templates that pass validation cannot hang or balloon the engine or the validator.

Each construct that once ate gigabytes or spun for minutes runs in a child process under
a hard address-space limit: it must be refused when compiled (validation) or stopped at
render within a fixed time, and the child must come back with an answer, not a MemoryError
or a kill.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from orchestrator.playbook import check_text
from orchestrator.playbook.templates import (
    MAX_RENDER_SECONDS,
    TemplateError,
    TemplateLimitError,
    compile_template,
)
from tests.engine.conftest import HEADER

MEMORY_LIMIT = 768 * 1024 * 1024  # far below what any of these took (2-12 GB)
CHILD_TIMEOUT = 120  # the whole list, each stopped within seconds; the old code ran for hours

DOUBLING = "{% set s = 'ab' %}" + "{% set s = s ~ s %}" * 60 + "{{ s }}"
CONSTRUCTS = {
    "string doubling with set": DOUBLING,
    "list doubling with set": "{% set l = [1] %}" + "{% set l = l + l %}" * 60 + "{{ l|length }}",
    "namespace doubling": "{% set ns = namespace(s='x') %}" + "{% set ns.s = ns.s ~ ns.s %}" * 60 + "{{ ns.s }}",
    "nested list multiplication": "{{ [[[1] * 1000] * 1000] * 1000 }}",
    "nested list multiplication from data": "{{ [[signal.one] * signal.many] * signal.many }}",
    "lipsum": "{{ lipsum(1000000) }}",
    "range": "{{ range(100000000)|list|length }}",
    "cycler and joiner": "{{ cycler(1, 2).next() }}{{ joiner() }}",
    "huge integer power": "{{ 9 ** 999999999 }}",
    "huge integer power from data": "{{ signal.many ** signal.many ** signal.many }}",
    "repeated product of powers": "{{ (10 ** 1000) * (10 ** 1000) * (10 ** 1000) * (10 ** 1000) * (10 ** 1000) }}",
    "batch": "{{ signal.items|batch(99999999999, 'x')|list }}",
    "slice": "{{ signal.items|slice(999999999)|list }}",
    "printf width": "{{ '%0999999999d' % 1 }}",
    "printf precision": "{{ '%.999999999f' % 1 }}",
    "printf width from data": "{{ '%*d' % (signal.huge, 1) }}",
    "printf width in data": "{{ signal.format % 1 }}",
    "str.format width": "{{ '{:0999999999}'.format(1) }}",
    "repetition from data": "{{ signal.note * signal.huge }}",
    "replace chain": "{{ signal.note|replace('a', signal.note)|replace('a', signal.note)|replace('a', signal.note) }}",
    "join with a long separator": "{{ (signal.note * 40)|list|join(signal.note * 40) }}",
    "mapped replace": "{{ (signal.note * 40)|list|map('replace', 'a', signal.note * 90)|join }}",
    "many big literals": "{{ [" + ", ".join(["'x' * 99999"] * 30) + "] }}",
    "joined big values": "{{ " + " ~ ".join(["signal.note * 99"] * 200) + " }}",
    "sum of lists": "{{ ([[1]] * 15000)|sum(start=[]) }}",
    "tojson indent": "{{ signal|tojson(indent=999999999) }}",
    "int.to_bytes": "{{ signal.one.to_bytes(999999999, 'big') }}",
    "date width": "{{ now|date('%0999999999Y') }}",
    "deep nesting": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
}

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from datetime import UTC, datetime
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    from orchestrator.playbook.templates import TemplateError, TemplateLimitError, compile_template
    context = {{"now": datetime(2026, 11, 23, tzinfo=UTC), "signal": {{
        "one": 1, "many": 100000, "huge": 999999999, "note": "a" * 1000, "items": [1, 2, 3],
        "format": "%0999999999d"}}}}
    results = {{}}
    for name, source in json.loads(sys.stdin.read()).items():
        started = time.monotonic()
        try:
            template = compile_template(source)
        except TemplateError as exc:
            results[name] = {{"outcome": "refused", "seconds": time.monotonic() - started, "message": str(exc)}}
            continue
        started = time.monotonic()
        try:
            text = template.render(context)
            results[name] = {{"outcome": "rendered", "length": len(text)}}
        except TemplateLimitError as exc:
            results[name] = {{"outcome": "stopped", "seconds": time.monotonic() - started, "message": str(exc)}}
        except TemplateError as exc:
            results[name] = {{"outcome": "failed", "message": str(exc)}}
    print(json.dumps(results))
""").format(limit=MEMORY_LIMIT)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict[str, object]]:
    child = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(CONSTRUCTS), capture_output=True,
                           text=True, timeout=CHILD_TIMEOUT)
    assert child.returncode == 0, child.stderr[-2000:]
    return json.loads(child.stdout)


@pytest.mark.parametrize("name", sorted(CONSTRUCTS))
def test_each_construct_is_refused_at_validation_or_stopped_in_time_under_a_memory_limit(outcomes, name):
    outcome = outcomes[name]
    assert outcome["outcome"] in ("refused", "stopped"), outcome
    assert float(outcome["seconds"]) < MAX_RENDER_SECONDS + 3, outcome  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["string doubling with set", "namespace doubling", "lipsum", "range",
                                  "batch", "slice", "printf width", "printf precision", "huge integer power"])
def test_what_can_be_refused_is_refused_when_the_playbook_is_validated(outcomes, name):
    assert outcomes[name]["outcome"] == "refused", outcomes[name]


def test_a_render_stopped_by_a_bound_is_a_template_limit_error_not_a_missing_field():
    template = compile_template("{{ signal.note * signal.times }}")
    with pytest.raises(TemplateLimitError, match="not allowed"):
        template.render({"signal": {"note": "ab", "times": 10**7}})
    with pytest.raises(TemplateError) as missing:
        template.render({"signal": {"note": "ab"}})
    assert not isinstance(missing.value, TemplateLimitError)


@pytest.mark.parametrize("source, expected", [
    ("{{ account.name|upper }} / {{ account.name.lower() }}", "ACME / acme"),
    ("{{ '%5.1f' % 3.14159 }}|{{ '%-4s' % 'ab' }}|", "  3.1|ab  |"),
    ("{{ (account.tags|join(', ')) ~ '!' }}", "a, b!"),
    ("{{ account.tags|map('upper')|join }}", "AB"),
    ("{{ '-' * 10 }}{{ 2 ** 10 }}", "----------1024"),
    ("{{ [account.arr, 5]|sum }} {{ account.tags|length }}", "15 2"),
    ("{{ account|tojson }}", '{"arr": 10, "name": "Acme", "tags": ["a", "b"]}'),
])
def test_ordinary_templates_still_fill_in(source, expected):
    context = {"account": {"name": "Acme", "tags": ["a", "b"], "arr": 10}}
    assert compile_template(source).render(context) == expected


def test_a_playbook_with_an_unbounded_format_is_refused_by_validation_quickly():
    text = textwrap.dedent("""
    id: formats
    name: Formats
    stage: adopt
""" + HEADER + """
    enroll: {on: product.usage}
    steps:
      - id: call
        kind: human
        assign: {to: account.owner}
        task:
          title: "{{ '%0999999999d' % 1 }}"
          recommend: "Call."
          brief: [trigger]
        sla: {ack: 4 business hours, due: 2 business days}
    """)
    playbook, findings = check_text(text, "formats.yaml", lint=False)
    assert playbook is None
    assert any("format width" in finding.message for finding in findings), findings


def test_a_render_past_its_time_is_stopped(monkeypatch):
    import orchestrator.playbook.templates as templates
    template = compile_template("{{ account.name }} {{ account.name }}")
    monkeypatch.setattr(templates, "MAX_RENDER_SECONDS", -1.0)  # every render is already late
    with pytest.raises(TemplateLimitError, match="took longer than"):
        template.render({"account": {"name": "Acme"}})
