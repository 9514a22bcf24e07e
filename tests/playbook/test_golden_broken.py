"""Golden tests: each file in broken/ is one kind of mistake, with its exact located messages."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.playbook.catalog import is_catalog_file, load_catalog
from orchestrator.playbook.library import load_library
from orchestrator.playbook.loader import check_text

BROKEN = Path(__file__).resolve().parent / "broken"
CASES = sorted(p for p in BROKEN.glob("*.yaml") if not is_catalog_file(p))
CATALOG = load_catalog([BROKEN])  # broken/signals.yaml declares the custom fields the cases read
LIBRARY = load_library([BROKEN / "templates"])  # the named templates the template-* cases use
NOW = datetime(2026, 11, 23, tzinfo=UTC)
LAST_CHANGED = datetime(2026, 1, 5, tzinfo=UTC)


def findings_of(path: Path) -> list[str]:
    _playbook, findings = check_text(path.read_text(encoding="utf-8"), path.name, now=NOW,
                                     last_changed=LAST_CHANGED, catalog=CATALOG, library=LIBRARY)
    return [str(f).replace(f"{BROKEN}/", "") for f in findings]


def test_there_are_at_least_25_kinds_of_mistake():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_broken_playbook_yields_exactly_the_expected_messages(case):
    expected = case.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    assert findings_of(case) == expected


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_every_broken_playbook_has_at_least_one_finding(case):
    assert findings_of(case)


if __name__ == "__main__":  # regenerate: python -m tests.playbook.test_golden_broken
    for case in CASES:
        case.with_suffix(".expected").write_text("".join(f"{line}\n" for line in findings_of(case)))
