"""Property-based: random and garbled YAML never raises anything but our validation errors."""

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.playbook import PlaybookInvalid, load_playbook_text
from orchestrator.playbook.findings import Finding
from orchestrator.playbook.library import is_template_file
from orchestrator.playbook.loader import check_text
from orchestrator.playbook.yamlsafe import YamlProblem, decode, load_document

SHIPPED = sorted(p for p in (Path(__file__).resolve().parents[2] / "playbooks").rglob("*.yaml")
                 if not is_template_file(p))
SHIPPED_TEXTS = [p.read_text(encoding="utf-8") for p in SHIPPED]
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_our_errors(text: str) -> None:
    playbook, findings = check_text(text, "fuzz.yaml")
    assert all(isinstance(f, Finding) and f.line >= 1 and f.column >= 1 for f in findings)
    assert (playbook is None) == any(f.is_error for f in findings)
    try:
        load_playbook_text(text, "fuzz.yaml")
    except PlaybookInvalid as invalid:
        assert invalid.findings


@FAST
@given(st.binary(max_size=400))
def test_random_bytes_only_ever_give_findings(data):
    try:
        text = decode(data)
    except YamlProblem:
        return
    only_our_errors(text)


@FAST
@given(st.text(max_size=300))
def test_random_text_only_ever_gives_findings(text):
    only_our_errors(text)


@FAST
@given(st.sampled_from(SHIPPED_TEXTS), st.data())
def test_garbled_shipped_playbooks_only_ever_give_findings(text, data):
    chars = list(text)
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(chars) - 1))
        action = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        char = data.draw(st.sampled_from(list(" \n:-[]{}#&*!|>'\"\t%@`,?0aZ")))
        if action == "delete":
            del chars[position]
        elif action == "insert":
            chars.insert(position, char)
        else:
            chars[position] = char
    only_our_errors("".join(chars))


@FAST
@given(st.sampled_from(SHIPPED_TEXTS), st.data())
def test_shipped_playbooks_with_lines_dropped_only_ever_give_findings(text, data):
    lines = text.splitlines(keepends=True)
    drop = data.draw(st.sets(st.integers(0, len(lines) - 1), max_size=5))
    only_our_errors("".join(line for i, line in enumerate(lines) if i not in drop))


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["deal.closed_won", "14d", "2 business days", "account.owner", "human", "wait",
                     "automated", "exit", "goto", "out_of_loop", "on_the_loop", "{{ account.name }}",
                     "deal.amount > 5", "crm.create_note", "onboard", "due + 1 business day"]),
)
KEYS = st.sampled_from(["id", "name", "stage", "maintainer", "enroll", "on", "when", "steps", "kind",
                        "assign", "to", "role", "task", "title", "recommend", "sla", "due", "ack",
                        "escalate", "at", "do", "with", "oversight", "override", "window",
                        "compensate", "approval", "on_timeout", "goto", "exit", "rules", "limits",
                        "customer_touches", "timeout", "for", "until", "draft", "fallback"]) | st.text(max_size=8)
TREES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=40,
)


@FAST
@given(st.dictionaries(KEYS, TREES, max_size=8))
def test_random_nested_structures_only_ever_give_findings(tree):
    only_our_errors(yaml.safe_dump(tree, allow_unicode=True))


@FAST
@given(st.sampled_from(SHIPPED_TEXTS), TREES, st.data())
def test_shipped_playbooks_with_a_random_value_swapped_in_only_ever_give_findings(text, value, data):
    document = load_document(text).value  # our loader: `on:` must stay a text key
    steps = document["steps"]
    step = steps[data.draw(st.integers(0, len(steps) - 1))]
    step[data.draw(st.sampled_from(sorted(step)))] = value
    only_our_errors(yaml.safe_dump(document, allow_unicode=True))
