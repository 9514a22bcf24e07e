"""Safe YAML loading: core-schema booleans, positions, and refusals with locations."""

import time

import pytest

from orchestrator.playbook.yamlsafe import (
    MAX_BYTES,
    YamlProblem,
    load_document,
    render_doc_path,
)


def problem(text: str) -> YamlProblem:
    with pytest.raises(YamlProblem) as caught:
        load_document(text)
    return caught.value


def test_on_off_yes_no_stay_text_and_only_true_false_are_booleans():
    doc = load_document("enroll: {on: deal.closed_won}\na: yes\nb: off\nc: true\nd: False\n")
    assert doc.value == {"enroll": {"on": "deal.closed_won"}, "a": "yes", "b": "off", "c": True, "d": False}


def test_dates_and_sexagesimal_numbers_stay_text():
    assert load_document("a: 2024-01-01\nb: 1:30\n").value == {"a": "2024-01-01", "b": "1:30"}


def test_every_value_and_key_keeps_its_line_and_column():
    doc = load_document("steps:\n  - id: a\n    sla:\n      due: 2d\n")
    assert doc.positions[("steps", 0, "sla", "due")] == (4, 12)
    assert doc.key_positions[("steps", 0, "sla", "due")] == (4, 7)


def test_position_of_a_missing_path_falls_back_to_the_nearest_parent():
    doc = load_document("steps:\n  - id: a\n")
    assert doc.position(("steps", 0, "sla", "due")) == (2, 5)


def test_doc_paths_render_like_javascript():
    assert render_doc_path(("steps", 2, "sla", "due")) == "steps[2].sla.due"


def test_duplicate_keys_are_refused_at_the_second_one():
    error = problem("a: 1\nb: 2\na: 3\n")
    assert (error.line, error.column) == (3, 1)
    assert "appears twice" in error.message and "line 1" in error.message


def test_non_text_keys_are_refused():
    assert "must be a name" in problem("1: x\n").message
    assert "must be a name" in problem("true: x\n").message


def test_python_tags_are_refused():
    error = problem("a: !!python/object/apply:os.system [ls]\n")
    assert "!!python/object/apply:os.system" in error.message


def test_custom_tags_are_refused():
    assert "!secret" in problem("a: !secret x\n").message


def test_syntax_errors_carry_the_line_and_column():
    error = problem("a: 1\nb: [1, 2\n")
    assert error.line == 3 and "not valid YAML" in error.message


def test_many_aliases_are_refused():
    text = "a: &a x\n" + "".join(f"k{i}: *a\n" for i in range(101))
    assert "aliases" in problem(text).message


def test_billion_laughs_fails_fast():
    text = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join(["*" + chr(97 + i)] * 9) + "]\n" for i in range(9)
    )
    started = time.monotonic()
    problem(text)
    assert time.monotonic() - started < 2


def test_files_larger_than_the_cap_are_refused():
    assert "larger than" in problem("a: " + "x" * MAX_BYTES).message


def test_deep_nesting_is_refused_without_crashing():
    assert "nested" in problem("a: " + "[" * 5000).message


def test_several_documents_in_one_file_are_refused():
    assert "more than one" in problem("a: 1\n---\nb: 2\n").message


def test_an_empty_file_is_refused():
    assert "empty" in problem("# only a comment\n").message


def test_merge_keys_are_refused_with_a_clear_message():
    assert "merge keys" in problem("base: &b {x: 1}\nother:\n  <<: *b\n").message
