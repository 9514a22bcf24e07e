"""From file to compiled playbook: YAML, schema, references, compile, lint.

Every stage runs even when an earlier one found problems (as far as the data allows),
so one run reports all of a file's errors, not only the first.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from marshmallow import ValidationError

from orchestrator.playbook.catalog import Catalog, catalog_near, is_catalog_file
from orchestrator.playbook.compile import build_playbook
from orchestrator.playbook.dictionary import check_fields
from orchestrator.playbook.findings import Finding, PlaybookInvalid, sort_findings
from orchestrator.playbook.library import Library, is_template_file, library_near, resolve_templates
from orchestrator.playbook.lint import lint_playbook
from orchestrator.playbook.locate import findings_from_messages
from orchestrator.playbook.model import Playbook
from orchestrator.playbook.references import check_references
from orchestrator.playbook.schema import PlaybookSchema
from orchestrator.playbook.yamlsafe import MAX_BYTES, Document, YamlProblem, decode, load_document

__all__ = [
    "check_text",
    "git_last_changed",
    "load_playbook",
    "load_playbook_text",
    "playbook_files",
    "validate_paths",
]

LastChanged = Callable[[Path], datetime | None]
Against = Callable[[Playbook, Document, str], list[Finding]]


def check_text(
    text: str,
    path: str = "<string>",
    *,
    lint: bool = True,
    now: datetime | None = None,
    last_changed: datetime | None = None,
    catalog: Catalog | None = None,
    library: Library | None = None,
) -> tuple[Playbook | None, list[Finding]]:
    """The compiled playbook (None when it has errors) and every finding, sorted.

    `library` holds the named templates the playbook may reference (`template: NAME`).
    """
    try:
        doc = load_document(text)
    except YamlProblem as problem:
        return None, [Finding(path, problem.line, problem.column, "error", "yaml", problem.message)]
    if not isinstance(doc.value, dict):
        return None, [Finding(path, 1, 1, "error", "schema",
                              "a playbook must be a mapping of keys (id, name, stage, steps...)")]
    findings = check_references(doc, path) + check_fields(doc, path, source=text, catalog=catalog)
    doc, found, used = resolve_templates(doc, path, library)
    findings += found
    for template in {template.name: template for template, _ in used}.values():
        findings += check_fields(template.doc, template.path, source=template.text, catalog=catalog,
                                 playbook=doc.value)
    data = None
    try:
        data = PlaybookSchema().load(doc.value)
    except ValidationError as error:
        findings += findings_from_messages(error.messages, doc=doc, source=text, path=path)
    if data is None or any(f.is_error for f in findings):
        return None, sort_findings(_unique(findings))
    playbook = build_playbook(data, doc, path)
    if lint:
        findings += lint_playbook(playbook, doc=doc, path=path, now=now, last_changed=last_changed)
    errors = [f for f in findings if f.is_error]
    return (None if errors else playbook), sort_findings(findings)


def _unique(findings: list[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))


def load_playbook_text(text: str, path: str = "<string>", *, lint: bool = True,
                       library: Library | None = None) -> Playbook:
    """Compile a playbook from text; any error raises PlaybookInvalid with all findings."""
    playbook, findings = check_text(text, path, lint=lint, library=library)
    if playbook is None:
        raise PlaybookInvalid(findings)
    return playbook


def load_playbook(path: str | os.PathLike[str]) -> Playbook:
    """Compile the playbook in a file; any error raises PlaybookInvalid with all findings."""
    name = str(path)
    text, problem = read_text(Path(path))
    if problem:
        raise PlaybookInvalid([problem])
    return load_playbook_text(text or "", name, library=library_near([path]))


def read_text(path: Path) -> tuple[str | None, Finding | None]:
    """The file's text, or a finding saying why it cannot be read.

    The file is measured before it is read, and never more than the size limit is read
    (a FIFO or a file that grows while it is read cannot cost more than that).
    """
    try:
        measured = path.stat()
        if not stat.S_ISREG(measured.st_mode):  # a FIFO would block, a device never end
            return None, _file_problem(path, "not a regular file")
        if measured.st_size > MAX_BYTES:
            raise YamlProblem(f"the file is larger than {MAX_BYTES // 1024} KiB; a playbook is far smaller")
        with path.open("rb") as handle:
            return decode(handle.read(MAX_BYTES + 1)), None
    except YamlProblem as problem:
        return None, Finding(str(path), problem.line, problem.column, "error", "yaml", problem.message)
    except OSError as error:
        return None, _file_problem(path, f"cannot read the file ({error.strerror or error})")


def _file_problem(path: Path, message: str) -> Finding:
    return Finding(str(path), 1, 1, "error", "file", message)


def playbook_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[Finding]]:
    """YAML files under `paths` (folders are searched recursively), and missing paths.

    Inside a folder, a file or folder that links outside it is not followed: its content
    could be anything (a secret quoted back in an error message, a device that never ends).
    """
    files: list[Path] = []
    problems: list[Finding] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            root = path.resolve()
            for found in sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")
                                and not is_catalog_file(p) and not is_template_file(p)):
                if not _inside(found, root):
                    problems.append(_file_problem(found, "links outside the playbooks folder; not followed"))
                elif found.is_file():
                    files.append(found)
        elif path.is_file() or (path.exists() and not path.is_dir()):
            files.append(path)
        else:
            problems.append(_file_problem(path, "no such file or folder"))
    return list(dict.fromkeys(files)), problems


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop
        return False


def git_last_changed(path: Path) -> datetime | None:
    """When the file last changed: its last commit if committed and clean, else its mtime."""
    try:
        folder = str(path.resolve().parent)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", path.name], cwd=folder, check=False,
            capture_output=True, text=True, timeout=10,
        )
        log = subprocess.run(
            ["git", "log", "-1", "--format=%cI", "--", path.name], cwd=folder, check=False,
            capture_output=True, text=True, timeout=10,
        )
        if status.returncode == 0 and not status.stdout.strip() and log.stdout.strip():
            return datetime.fromisoformat(log.stdout.strip()).astimezone(UTC)
    except (OSError, subprocess.SubprocessError, ValueError):
        pass  # no git, not a repository: fall back to the file's own time
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None


def validate_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    now: datetime | None = None,
    last_changed: LastChanged | None = git_last_changed,
    against: Against | None = None,
) -> list[Finding]:
    """Findings for every playbook file under `paths`, including cross-file ones.

    `against` adds findings for a valid playbook from outside the file (the live configuration:
    `validate --against DATABASE`).
    """
    now = now or datetime.now(UTC)
    paths = list(paths)
    files, findings = playbook_files(paths)
    catalog, problem = catalog_near(paths)
    if problem:
        findings.append(problem)
    library = library_near(paths)
    findings += library.findings_inside(paths)
    seen_ids: dict[str, Path] = {}
    health_in: Path | None = None
    for path in files:
        text, problem = read_text(path)
        if problem:
            findings.append(problem)
            continue
        changed = last_changed(path) if last_changed else None
        playbook, found = check_text(text or "", str(path), now=now, last_changed=changed, catalog=catalog,
                                     library=library)
        findings += found
        if playbook is None:
            continue
        if against is not None:
            findings += against(playbook, load_document(text or ""), str(path))
        if playbook.health is not None:
            if health_in is not None:
                line, column = load_document(text or "").key_position(("health",))
                findings.append(Finding(
                    str(path), line, column, "error", "duplicate-health-model",
                    f"{health_in} already declares the health model; one playbook declares it, "
                    "so account.health has one meaning", "health",
                ))
            else:
                health_in = path
        if playbook.id in seen_ids:
            findings.append(Finding(
                str(path), 1, 1, "error", "duplicate-playbook",
                f'the playbook id "{playbook.id}" is also used by {seen_ids[playbook.id]}; '
                "each playbook needs its own id", "id",
            ))
        else:
            seen_ids[playbook.id] = path
    return list(dict.fromkeys(findings))  # a broken template is reported once, not per playbook using it
