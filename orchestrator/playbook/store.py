"""Applied playbook versions and drift between files and the database.

Services with keyword-only arguments; the caller owns the transaction. A version is
stored only when the text changed (sha256 of the source), so applying twice is
harmless, and nothing is stored when any file is invalid.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator import audit
from orchestrator.errors import NotFound
from orchestrator.models import PlaybookVersion
from orchestrator.playbook.findings import Finding, PlaybookInvalid
from orchestrator.playbook.loader import (
    check_text,
    load_playbook_text,
    playbook_files,
    read_text,
)
from orchestrator.playbook.model import Playbook, Position
from orchestrator.playbook.yamlsafe import YamlProblem, load_document

__all__ = [
    "ApplyReport",
    "Change",
    "DriftReport",
    "activate_version",
    "active_playbooks",
    "apply_playbooks",
    "checksum",
    "diff_playbooks",
    "list_playbooks",
    "playbook_history",
]

ChangeKind = Literal["new", "changed", "unchanged", "missing"]


def checksum(text: str) -> str:
    """sha256 hex of the source text, as stored in PlaybookVersion.checksum."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Change:
    """One playbook compared with its active version."""

    playbook_id: str
    kind: ChangeKind
    path: str
    old_version: int | None = None
    new_version: int | None = None
    summary: tuple[str, ...] = ()  # step-level, e.g. 'step "kickoff-call" changed'
    diff: str = ""  # unified diff of the source text

    def headline(self) -> str:
        """One line naming the change."""
        if self.kind == "new":
            return f"{self.playbook_id}: new ({self.path})"
        if self.kind == "missing":
            return f"{self.playbook_id}: active version {self.old_version} has no file any more ({self.path})"
        if self.kind == "unchanged":
            return f"{self.playbook_id}: unchanged (version {self.old_version})"
        summary = "; ".join(self.summary) if self.summary else "text changed"
        return f"{self.playbook_id}: changed since version {self.old_version} ({self.path}): {summary}"


@dataclass(frozen=True)
class ApplyReport:
    applied: bool  # False when any file was invalid: nothing was stored
    findings: list[Finding] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    @property
    def stored(self) -> list[Change]:
        return [c for c in self.changes if c.kind in ("new", "changed")]


@dataclass(frozen=True)
class DriftReport:
    changes: list[Change] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def drifted(self) -> list[Change]:
        return [c for c in self.changes if c.kind != "unchanged"]


@dataclass(frozen=True)
class _File:
    path: Path
    text: str
    playbook_id: str
    playbook: Playbook | None


def _active(session: Session) -> dict[str, PlaybookVersion]:
    rows = session.scalars(select(PlaybookVersion).where(PlaybookVersion.active))
    return {row.playbook_id: row for row in rows}


def _compare(old: PlaybookVersion, text: str, path: str) -> Change:
    diff = "".join(difflib.unified_diff(
        old.source_text.splitlines(keepends=True), text.splitlines(keepends=True),
        fromfile=f"{old.playbook_id} version {old.version}", tofile=path,
    ))
    return Change(old.playbook_id, "changed", path, old_version=old.version,
                  summary=tuple(step_summary(old.source_text, text)), diff=diff)


def _compiled(text: str) -> Playbook | None:
    try:
        return load_playbook_text(text, lint=False)
    except PlaybookInvalid:
        return None


def _comparable(step: object) -> object:
    # Moving a step down a line is not a change of the step.
    return dataclasses.replace(step, position=Position(0, 0))  # type: ignore[type-var]


def step_summary(old_text: str, new_text: str) -> list[str]:
    """What changed, in playbook terms: settings and steps added, removed or edited."""
    old, new = _compiled(old_text), _compiled(new_text)
    if old is None or new is None:
        return []
    lines = []
    for name in ("name", "stage", "maintainer", "review_every", "enroll", "exit_on", "touch_limit",
                 "sensitive_signals", "description"):
        if getattr(old, name) != getattr(new, name):
            lines.append(f"{name} changed")
    old_steps = {s.id: s for s in old.steps}
    new_steps = {s.id: s for s in new.steps}
    for step_id, step in new_steps.items():
        if step_id not in old_steps:
            lines.append(f'step "{step_id}" added')
        elif _comparable(old_steps[step_id]) != _comparable(step):
            lines.append(f'step "{step_id}" changed')
    lines += [f'step "{step_id}" removed' for step_id in old_steps if step_id not in new_steps]
    if not lines and [s.id for s in old.steps] != [s.id for s in new.steps]:
        lines.append("steps reordered")
    return lines


def _read_files(paths: Iterable[str | os.PathLike[str]], *, validate: bool) -> tuple[list[_File], list[Finding]]:
    files, findings = playbook_files(paths)
    out: list[_File] = []
    seen: dict[str, Path] = {}
    for path in files:
        text, problem = read_text(path)
        if problem or text is None:
            findings.append(problem)  # type: ignore[arg-type]
            continue
        playbook = None
        if validate:
            playbook, found = check_text(text, str(path))
            findings += found
            playbook_id = playbook.id if playbook else None
        else:
            playbook_id = _raw_id(text)
            if playbook_id is None:
                findings.append(Finding(str(path), 1, 1, "error", "schema",
                                        'cannot tell which playbook this is: it has no readable "id"'))
        if playbook_id is None:
            continue
        if playbook_id in seen:
            findings.append(Finding(str(path), 1, 1, "error", "duplicate-playbook",
                                    f'the playbook id "{playbook_id}" is also used by {seen[playbook_id]}',
                                    "id"))
            continue
        seen[playbook_id] = path
        out.append(_File(path, text, playbook_id, playbook))
    return out, findings


def _raw_id(text: str) -> str | None:
    try:
        value = load_document(text).value
    except YamlProblem:
        return None
    found = value.get("id") if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


def apply_playbooks(
    *, session: Session, paths: Iterable[str | os.PathLike[str]], now: datetime, actor: str
) -> ApplyReport:
    """Store a new active version of every playbook whose text changed; all or nothing."""
    files, findings = _read_files(paths, validate=True)
    if any(f.is_error for f in findings):
        return ApplyReport(applied=False, findings=findings)
    active = _active(session)
    changes: list[Change] = []
    for file in files:
        assert file.playbook is not None  # validated above
        current = active.get(file.playbook_id)
        digest = checksum(file.text)
        if current is not None and current.checksum == digest:
            changes.append(Change(file.playbook_id, "unchanged", str(file.path), old_version=current.version))
            continue
        latest = session.scalar(select(func.max(PlaybookVersion.version))
                                .where(PlaybookVersion.playbook_id == file.playbook_id)) or 0
        if current is not None:
            change = _compare(current, file.text, str(file.path))
            current.active = False
            # The partial unique index allows one active row: retire the old one first.
            session.flush()
        else:
            change = Change(file.playbook_id, "new", str(file.path))
        session.add(PlaybookVersion(
            playbook_id=file.playbook_id, version=latest + 1, name=file.playbook.name,
            stage=file.playbook.stage.value, checksum=digest, source_text=file.text,
            # Absolute, so `diff` finds a missing file whichever directory it runs from.
            source_path=str(file.path.resolve()), active=True, applied_at=now, applied_by=actor,
        ))
        changes.append(dataclasses.replace(change, new_version=latest + 1))
    session.flush()
    return ApplyReport(applied=True, findings=findings, changes=changes)


def _covers(paths: list[Path], source_path: str) -> bool:
    stored = Path(source_path).resolve()
    return any(stored == p or p in stored.parents for p in paths)


def diff_playbooks(*, session: Session, paths: Iterable[str | os.PathLike[str]]) -> DriftReport:
    """Drift between the files and the active versions: changed, new, and missing files.

    An active playbook counts as missing only when it was applied from inside one of
    `paths`, so diffing one file does not report every other playbook as gone.
    """
    given = [Path(p) for p in paths]
    files, findings = _read_files(given, validate=False)
    active = _active(session)
    changes: list[Change] = []
    for file in files:
        current = active.get(file.playbook_id)
        if current is None:
            changes.append(Change(file.playbook_id, "new", str(file.path)))
        elif current.checksum != checksum(file.text):
            changes.append(_compare(current, file.text, str(file.path)))
        else:
            changes.append(Change(file.playbook_id, "unchanged", str(file.path), old_version=current.version))
    in_files = {f.playbook_id for f in files}
    resolved = [p.resolve() for p in given]
    for playbook_id, version in sorted(active.items()):
        if playbook_id not in in_files and _covers(resolved, version.source_path):
            changes.append(Change(playbook_id, "missing", version.source_path, old_version=version.version))
    return DriftReport(changes=changes, findings=findings)


def list_playbooks(*, session: Session) -> list[PlaybookVersion]:
    """The active version of every playbook, by id."""
    return list(session.scalars(
        select(PlaybookVersion).where(PlaybookVersion.active).order_by(PlaybookVersion.playbook_id)
    ))


_COMPILED: dict[str, Playbook] = {}


def compiled(version: PlaybookVersion) -> Playbook:
    """A stored version compiled from its text, cached by checksum.

    Compiled playbooks are immutable, so one object per checksum serves every session.
    Lint is not re-run: a version that passed lint when applied keeps running even if a
    later release adds a rule; `validate` and `apply` are where new rules bite.
    """
    playbook = _COMPILED.get(version.checksum)
    if playbook is None:
        playbook = load_playbook_text(version.source_text, version.source_path, lint=False)
        _COMPILED[version.checksum] = playbook
    return playbook


def active_playbooks(*, session: Session) -> list[tuple[PlaybookVersion, Playbook]]:
    """Active versions with their compiled form."""
    return [(version, compiled(version)) for version in list_playbooks(session=session)]


def playbook_history(*, session: Session, playbook_id: str) -> list[PlaybookVersion]:
    """Every stored version of a playbook, newest first, with who applied it and when."""
    versions = list(session.scalars(select(PlaybookVersion).where(PlaybookVersion.playbook_id == playbook_id)
                                    .order_by(PlaybookVersion.version.desc())))
    if not versions:
        raise NotFound(f"no playbook {playbook_id!r} has been applied")
    return versions


def activate_version(*, session: Session, playbook_id: str, version: int, now: datetime,
                     actor: str) -> PlaybookVersion:
    """Make a stored version the active one again (a rollback without a copy), audited.

    Journeys already running keep the version they enrolled under; only new enrollments
    take the activated one.
    """
    versions = playbook_history(session=session, playbook_id=playbook_id)
    target = next((v for v in versions if v.version == version), None)
    if target is None:
        known = ", ".join(str(v.version) for v in reversed(versions))
        raise NotFound(f"playbook {playbook_id!r} has no version {version} (stored: {known})")
    current = next((v for v in versions if v.active), None)
    if current is target:
        return target
    if current is not None:
        current.active = False
        # The partial unique index allows one active row: retire the old one first.
        session.flush()
    target.active = True
    audit.record(session, at=now, action=audit.AuditAction.PLAYBOOK_ACTIVATED, actor=actor,
                 rule="operator", playbook_id=playbook_id, playbook_version=version,
                 reason=f"{actor} activated version {version}"
                        + (f" (was {current.version})" if current is not None else ""))
    session.flush()
    return target
