"""Lint rules on the flow graph, and the public loading API."""

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.playbook import (
    Finding,
    PlaybookInvalid,
    flow,
    load_playbook,
    load_playbook_text,
    validate_paths,
)
from orchestrator.playbook.lint import RULES
from orchestrator.playbook.loader import git_last_changed

HEAD = """id: sample
name: Sample
stage: onboard
maintainer: revops@acme.example
enroll: {on: deal.closed_won}
"""
NOTE = "    kind: automated\n    oversight: out_of_loop\n    do: crm.create_note\n    with: {body: hi}\n"


def compile_steps(steps: str, head: str = HEAD):
    return load_playbook_text(head + "steps:\n" + steps, lint=False)


def rules_of(text: str) -> list[str]:
    with pytest.raises(PlaybookInvalid) as caught:
        load_playbook_text(text)
    return [f.rule for f in caught.value.findings]


def test_a_finding_prints_as_path_line_column_severity_rule_and_message():
    finding = Finding("a.yaml", 3, 7, "error", "schema", "must be text", "steps[2].sla.due")
    assert str(finding) == "a.yaml:3:7: error: [schema] steps[2].sla.due: must be text"


def test_enroll_on_arrives_as_the_key_on_not_as_true():
    playbook = compile_steps("  - id: done\n    kind: exit\n")
    assert playbook.enroll.signal == "deal.closed_won"


def test_steps_remember_their_position_in_the_file():
    playbook = compile_steps("  - id: done\n    kind: exit\n")
    assert (playbook.steps[0].position.line, playbook.steps[0].position.column) == (7, 5)


def test_all_errors_of_a_file_are_reported_in_one_run():
    steps = "steps:\n  - id: a\n    kind: wiat\n  - id: b\n    kind: goto\n    to: zz\n"
    text = HEAD.replace("onboard", "onbord") + steps
    assert sorted(rules_of(text)) == ["schema", "schema", "unknown-step"]


def test_load_playbook_reads_a_file_and_names_it_in_findings(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("id: x\n")
    with pytest.raises(PlaybookInvalid) as caught:
        load_playbook(path)
    assert all(f.path == str(path) for f in caught.value.findings)


def test_a_wait_continues_with_the_next_step_or_jumps_on_timeout():
    playbook = compile_steps(
        "  - {id: w, kind: wait, for: product.usage, timeout: 7d, on_timeout: {goto: late}}\n"
        "  - {id: ok, kind: exit}\n  - {id: late, kind: exit}\n")
    assert flow.successors(playbook, playbook.step("w")) == ["ok", "late"]


def test_a_branch_without_otherwise_has_only_its_rules_edges():
    playbook = compile_steps(
        "  - {id: b, kind: branch, rules: [{when: 'deal.amount > 1', goto: big}]}\n"
        "  - {id: small, kind: exit}\n  - {id: big, kind: exit}\n")
    assert flow.successors(playbook, playbook.step("b")) == ["big"]
    assert flow.reachable(playbook) == {"b", "big"}


def test_a_loop_through_a_wait_is_fine_but_a_loop_of_gotos_is_not():
    waiting = compile_steps(
        "  - {id: w, kind: wait, for: product.usage, timeout: 7d, on_timeout: {exit: true}}\n"
        "  - {id: again, kind: goto, to: w}\n")
    spinning = compile_steps("  - {id: a, kind: goto, to: b}\n  - {id: b, kind: goto, to: a}\n")
    assert flow.loops_without_pause(waiting) == []
    assert flow.loops_without_pause(spinning) == [["a", "b"]]


def test_a_human_step_closes_the_protected_zone():
    text = (HEAD + "sensitive_signals: [sentiment.negative]\nsteps:\n"
            "  - {id: w, kind: wait, for: sentiment.negative, timeout: 7d, on_timeout: {exit: true}}\n"
            "  - id: call\n    kind: human\n    assign: {to: account.owner}\n"
            "    task: {title: Call, recommend: Call}\n    sla: {due: 1 business day}\n"
            "  - id: survey\n    kind: automated\n    oversight: out_of_loop\n    do: customer.survey\n"
            "    with: {survey: csat}\n")
    assert load_playbook_text(text).step("survey")


def test_the_timeout_path_of_a_sensitive_wait_is_not_a_protected_zone():
    text = (HEAD + "sensitive_signals: [sentiment.negative]\nsteps:\n"
            "  - {id: w, kind: wait, for: sentiment.negative, timeout: 7d, on_timeout: {goto: tip}}\n"
            "  - {id: stop, kind: exit}\n"
            "  - id: tip\n    kind: automated\n    oversight: out_of_loop\n    do: customer.in_app_message\n"
            "    with: {body: hi}\n")
    assert load_playbook_text(text).step("tip")


def test_every_rule_has_an_id_a_severity_and_an_explanation():
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    assert all(r.severity in ("error", "warning") and r.explanation for r in RULES)
    for needed in ("high-risk-unattended", "protected-human-zone", "sla-required", "named-owner",
                   "override-missing", "unreachable-step", "loop-without-wait", "review-overdue"):
        assert needed in ids


def test_validate_paths_searches_folders_and_reports_missing_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.yml").write_text(HEAD + "steps:\n  - {id: done, kind: exit}\n")
    findings = validate_paths([tmp_path, tmp_path / "nope.yaml"], last_changed=None)
    assert [(f.rule, Path(f.path).name) for f in findings] == [("file", "nope.yaml")]


def test_two_files_with_one_playbook_id_are_refused(tmp_path):
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(HEAD + "steps:\n  - {id: done, kind: exit}\n")
    assert [f.rule for f in validate_paths([tmp_path], last_changed=None)] == ["duplicate-playbook"]


def test_review_date_comes_from_the_last_git_commit_of_the_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + "review_every: 30d\nsteps:\n  - {id: done, kind: exit}\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "p.yaml"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x", "--date", "2026-01-05T00:00:00Z"], cwd=tmp_path,
                   check=True, env={"GIT_COMMITTER_DATE": "2026-01-05T00:00:00Z", "PATH": "/usr/bin:/bin"})
    assert git_last_changed(path) == datetime(2026, 1, 5, tzinfo=UTC)
    findings = validate_paths([path], now=datetime(2026, 11, 23, tzinfo=UTC))
    assert [(f.severity, f.rule) for f in findings] == [("warning", "review-overdue")]


def test_a_recent_review_gives_no_warning(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + "review_every: 30d\nsteps:\n  - {id: done, kind: exit}\n")
    assert validate_paths([path], now=datetime.now(UTC)) == []


def test_a_held_customer_action_on_the_loop_needs_a_window_but_no_compensation():
    steps = ("  - id: welcome\n    kind: automated\n    oversight: on_the_loop\n"
             "    risk: {error_cost: low, correction: fast}\n    do: customer.email\n"
             "    with: {to: buyer@customer.example, subject: Welcome, body: Hello}\n")
    playbook = load_playbook_text(HEAD + "review_every: 365d\nsteps:\n" + steps + "    override: {window: 2h}\n")
    assert playbook.steps[0].compensate is None
    with pytest.raises(PlaybookInvalid) as caught:
        load_playbook_text(HEAD + "review_every: 365d\nsteps:\n" + steps)
    [finding] = [f for f in caught.value.findings if f.rule == "override-missing"]
    assert "no override.window" in finding.message and "before it is sent" in finding.message
    assert "compensate" not in finding.message


def test_a_recent_reviewed_on_in_the_file_wins_over_an_old_git_date():
    from orchestrator.playbook.loader import check_text

    text = HEAD + "review_every: 90d\nreviewed_on: 2026-11-01\nsteps:\n  - id: done\n    kind: exit\n"
    now, old_commit = datetime(2026, 11, 23, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    playbook, findings = check_text(text, now=now, last_changed=old_commit)
    assert playbook is not None and playbook.reviewed_on.isoformat() == "2026-11-01"
    assert findings == []
    _, without = check_text(text.replace("reviewed_on: 2026-11-01\n", ""), now=now, last_changed=old_commit)
    assert [f.rule for f in without] == ["review-overdue"]
