"""Applied playbook versions and drift between files and the database.

Services with keyword-only arguments; the caller owns the transaction. A version is
stored only when the text changed (sha256 of the source), so applying twice is
harmless, and nothing is stored when any file is invalid.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from orchestrator import audit
from orchestrator.errors import NotFound
from orchestrator.models import PlaybookVersion
from orchestrator.playbook.findings import Finding, PlaybookInvalid, sort_findings
from orchestrator.playbook.library import library_near, parse_library, template_names
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
    "apply_text",
    "check_with_templates",
    "checksum",
    "diff_playbooks",
    "list_playbooks",
    "playbook_history",
    "version_diff",
]

ChangeKind = Literal["new", "changed", "unchanged", "missing"]


def checksum(text: str, templates: Mapping[str, str] | None = None) -> str:
    """sha256 hex of the source text and the named templates it uses, as stored in PlaybookVersion.checksum.

    Without templates it is the sha256 of the text alone, so versions stored before templates
    existed keep their checksum.
    """
    data = text if not templates else text + "\0" + json.dumps(dict(templates), sort_keys=True)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


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
    templates: dict[str, str] = field(default_factory=dict)  # the named templates it uses

    @property
    def checksum(self) -> str:
        return checksum(self.text, self.templates)


def _active(session: Session) -> dict[str, PlaybookVersion]:
    rows = session.scalars(select(PlaybookVersion).where(PlaybookVersion.active))
    return {row.playbook_id: row for row in rows}


def _compare(old: PlaybookVersion, text: str, path: str, templates: Mapping[str, str] | None = None) -> Change:
    diff, summary = compare_texts(old.source_text, dict(old.templates or {}), text, dict(templates or {}),
                                  old_label=f"{old.playbook_id} version {old.version}", new_label=path)
    return Change(old.playbook_id, "changed", path, old_version=old.version, summary=tuple(summary), diff=diff)


def compare_texts(old_text: str, old_templates: Mapping[str, str], new_text: str,
                  new_templates: Mapping[str, str], *, old_label: str, new_label: str) -> tuple[str, list[str]]:
    """A unified diff of a playbook and its named templates, and the changes in playbook terms."""
    diff = "".join(difflib.unified_diff(old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                        fromfile=old_label, tofile=new_label))
    summary = step_summary(old_text, new_text, old_templates=old_templates, new_templates=new_templates)
    for name in sorted(set(old_templates) | set(new_templates)):
        before, after = old_templates.get(name, ""), new_templates.get(name, "")
        if before == after:
            continue
        diff += "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                             fromfile=f"{old_label}: templates/{name}.yaml",
                                             tofile=f"{new_label}: templates/{name}.yaml"))
        summary.append(f'template "{name}" ' + ("added" if name not in old_templates else
                                                "removed" if name not in new_templates else "changed"))
    return diff, summary


def _compiled(text: str, templates: Mapping[str, str] | None = None) -> Playbook | None:
    try:
        return load_playbook_text(text, lint=False, library=parse_library(templates or {}))
    except PlaybookInvalid:
        return None


def _comparable(step: object) -> object:
    # Moving a step down a line is not a change of the step.
    return dataclasses.replace(step, position=Position(0, 0))  # type: ignore[type-var]


def step_summary(old_text: str, new_text: str, *, old_templates: Mapping[str, str] | None = None,
                 new_templates: Mapping[str, str] | None = None) -> list[str]:
    """What changed, in playbook terms: settings and steps added, removed or edited."""
    old, new = _compiled(old_text, old_templates), _compiled(new_text, new_templates)
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
    paths = list(paths)
    files, findings = playbook_files(paths)
    library = library_near(paths)
    if validate:
        findings += library.findings_inside(paths)
    out: list[_File] = []
    seen: dict[str, Path] = {}
    for path in files:
        text, problem = read_text(path)
        if problem or text is None:
            findings.append(problem)  # type: ignore[arg-type]
            continue
        playbook = None
        if validate:
            playbook, found = check_text(text, str(path), library=library)
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
        out.append(_File(path, text, playbook_id, playbook, templates=library.snapshot(_template_names(text))))
    return out, list(dict.fromkeys(findings))


def _template_names(text: str) -> list[str]:
    try:
        return template_names(load_document(text))
    except YamlProblem:
        return []


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
    changes = [_store(session, file, active.get(file.playbook_id), now=now, actor=actor) for file in files]
    session.flush()
    return ApplyReport(applied=True, findings=findings, changes=changes)


def check_with_templates(text: str, path: str, templates: Mapping[str, str] | None = None
                         ) -> tuple[Playbook | None, list[Finding], dict[str, str]]:
    """Check one playbook given as text with the named templates given beside it (name -> YAML).

    The templates are read as a `templates/` folder would be: a problem in any of them is a finding
    located in `templates/NAME.yaml`. Returns the playbook (None when invalid), the findings and the
    texts of the templates it uses, as `apply` stores them with the version.
    """
    library = parse_library(templates or {})
    playbook, findings = check_text(text, path, library=library)
    # Every template given is checked, used or not; a broken one that is used is reported once.
    findings = sort_findings(list(dict.fromkeys([*library.findings, *findings])))
    if any(f.is_error for f in findings):
        playbook = None
    return playbook, findings, library.snapshot(_template_names(text))


def apply_text(*, session: Session, text: str, path: str, now: datetime, actor: str,
               templates: Mapping[str, str] | None = None) -> ApplyReport:
    """Store one playbook given as text (the API's apply) as a new active version when it changed.

    `templates` are the named templates it may use (name -> YAML), standing in for the folder
    beside the files; those it uses are stored with the version, as `apply_playbooks` does.
    Nothing is stored when the playbook or any template is invalid.
    """
    playbook, findings, used = check_with_templates(text, path, templates)
    if playbook is None:
        return ApplyReport(applied=False, findings=findings)
    file = _File(Path(path), text, playbook.id, playbook, templates=used)
    change = _store(session, file, _active(session).get(playbook.id), now=now, actor=actor, keep_path=True)
    session.flush()
    return ApplyReport(applied=True, findings=findings, changes=[change])


def _store(session: Session, file: _File, current: PlaybookVersion | None, *, now: datetime, actor: str,
           keep_path: bool = False) -> Change:
    assert file.playbook is not None  # validated by the caller
    digest = file.checksum
    if current is not None and current.checksum == digest:
        return Change(file.playbook_id, "unchanged", str(file.path), old_version=current.version)
    latest = session.scalar(select(func.max(PlaybookVersion.version))
                            .where(PlaybookVersion.playbook_id == file.playbook_id)) or 0
    if current is not None:
        change = _compare(current, file.text, str(file.path), file.templates)
        current.active = False
        # The partial unique index allows one active row: retire the old one first.
        session.flush()
    else:
        change = Change(file.playbook_id, "new", str(file.path))
    session.add(PlaybookVersion(
        playbook_id=file.playbook_id, version=latest + 1, name=file.playbook.name,
        stage=file.playbook.stage.value, checksum=digest, source_text=file.text, templates=file.templates,
        # Absolute, so `diff` finds a missing file whichever directory it runs from.
        source_path=str(file.path) if keep_path else str(file.path.resolve()), active=True,
        applied_at=now, applied_by=actor,
    ))
    return dataclasses.replace(change, new_version=latest + 1)


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
        elif current.checksum != file.checksum:
            changes.append(_compare(current, file.text, str(file.path), file.templates))
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
        playbook = load_playbook_text(version.source_text, version.source_path, lint=False,
                                      library=parse_library(version.templates or {}))
        _COMPILED[version.checksum] = playbook
    return playbook


def active_playbooks(*, session: Session) -> list[tuple[PlaybookVersion, Playbook]]:
    """Active versions with their compiled form.

    Asked by every engine pass and intake batch: the text (and templates) of a version is read
    only when it is not compiled yet, which in a running process is once.
    """
    return [(version, compiled(version)) for version in session.scalars(_ACTIVE_LIGHT)]


_ACTIVE_LIGHT = (select(PlaybookVersion).where(PlaybookVersion.active).order_by(PlaybookVersion.playbook_id)
                 .options(defer(PlaybookVersion.source_text), defer(PlaybookVersion.templates)))


def playbook_history(*, session: Session, playbook_id: str) -> list[PlaybookVersion]:
    """Every stored version of a playbook, newest first, with who applied it and when."""
    versions = list(session.scalars(select(PlaybookVersion).where(PlaybookVersion.playbook_id == playbook_id)
                                    .order_by(PlaybookVersion.version.desc())))
    if not versions:
        raise NotFound(f"no playbook {playbook_id!r} has been applied")
    return versions


def version_diff(*, session: Session, playbook_id: str, from_version: int, to_version: int) -> Change:
    """What changed between two stored versions of a playbook: steps, settings and templates, and the text diff."""
    versions = {v.version: v for v in playbook_history(session=session, playbook_id=playbook_id)}
    for wanted in (from_version, to_version):
        if wanted not in versions:
            known = ", ".join(str(v) for v in sorted(versions))
            raise NotFound(f"playbook {playbook_id!r} has no version {wanted} (stored: {known})")
    old, new = versions[from_version], versions[to_version]
    diff, summary = compare_texts(old.source_text, dict(old.templates or {}), new.source_text,
                                  dict(new.templates or {}), old_label=f"{playbook_id} version {from_version}",
                                  new_label=f"{playbook_id} version {to_version}")
    kind: ChangeKind = "unchanged" if old.checksum == new.checksum else "changed"
    return Change(playbook_id, kind, new.source_path, old_version=from_version, new_version=to_version,
                  summary=tuple(summary), diff=diff)


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
