"""Named templates: a `templates/` folder beside the playbooks, referenced by name.

A template file `templates/NAME.yaml` holds a `subject`, a `body` and optionally a `locale`.
A hybrid step names one with `draft: {template: NAME}` (its body is the draft) and an email or
chat action with `template: NAME` under `with` (subject and body of an email, the text of a chat
message). The validator resolves the names before the schema sees the playbook, so a missing
template, an unknown variable or a broken tag in a template is a finding located in the file
where it is written. The texts a playbook uses are stored with its version (`snapshot`), so a
template change makes a new playbook version and running journeys keep the text they had.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.hints import closest
from orchestrator.playbook.findings import Finding
from orchestrator.playbook.templates import TemplateError, compile_template
from orchestrator.playbook.yamlsafe import DocPath, Document, YamlProblem, load_document, render_doc_path

__all__ = ["FOLDER", "Library", "NamedTemplate", "is_template_file", "library_near", "load_library",
           "parse_library", "resolve_templates", "template_names"]

FOLDER = "templates"
_KEYS = ("subject", "body", "locale")
# Which action argument each template part fills.
_FILLS: dict[str, dict[str, str]] = {
    "customer.email": {"subject": "subject", "body": "body"},
    "notify.email": {"subject": "subject", "body": "body"},
    "notify.chat": {"body": "text"},
}


@dataclass(frozen=True)
class NamedTemplate:
    name: str
    path: str
    text: str
    doc: Document
    subject: str | None
    body: str
    locale: str | None


@dataclass
class Library:
    """The named templates a set of playbooks can use, and problems reading them."""

    templates: dict[str, NamedTemplate] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)  # names whose file has errors (in findings)

    def findings_inside(self, paths: Iterable[str | os.PathLike[str]]) -> list[Finding]:
        """Problems of template files inside the folders given (a single playbook file given
        reports only the templates it uses, through `resolve_templates`)."""
        folders = [Path(p).resolve() for p in paths if Path(p).is_dir()]
        return [f for f in self.findings if any(Path(f.path).resolve().is_relative_to(folder) for folder in folders)]

    def snapshot(self, names: Iterable[str]) -> dict[str, str]:
        """The source text of these templates, by name, to store with a playbook version."""
        return {name: self.templates[name].text for name in sorted(set(names)) if name in self.templates}


def is_template_file(path: Path) -> bool:
    """True for a YAML file inside a `templates/` folder (never read as a playbook)."""
    return FOLDER in path.parent.parts[-1:]


def parse_library(texts: Mapping[str, str], *, folder: str = FOLDER) -> Library:
    """A library from stored texts (name -> YAML), as kept with a playbook version."""
    library = Library()
    for name, text in texts.items():
        _add(library, name, f"{folder}/{name}.yaml", text)
    return library


def load_library(folders: Iterable[Path]) -> Library:
    """Every `*.yaml` in these templates folders; the first folder wins a name used twice."""
    library = Library()
    for folder in folders:
        for path in sorted(p for p in folder.glob("*.y*ml") if p.is_file()):
            if path.stem in library.templates:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                library.findings.append(Finding(str(path), 1, 1, "error", "template", f"cannot read it: {error}"))
                continue
            _add(library, path.stem, str(path), text)
    return library


def library_near(paths: Iterable[str | os.PathLike[str]]) -> Library:
    """The templates for playbooks under `paths`: a `templates/` folder in them or up to three folders above."""
    folders: list[Path] = []
    for given in paths:
        path = Path(given).resolve()
        start = path if path.is_dir() else path.parent
        for above in [start, *start.parents][:4]:
            if (above / FOLDER).is_dir():
                folders.append(_shown(above / FOLDER))
                break
    library = load_library(dict.fromkeys(folders))
    library.findings.sort(key=lambda f: (f.path, f.line, f.column))
    return library


def _shown(path: Path) -> Path:
    """The path relative to the working directory when it is below it, as people typed it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _add(library: Library, name: str, path: str, text: str) -> None:
    before = len(library.findings)
    _parse(library, name, path, text)
    if len(library.findings) > before:
        library.broken.add(name)


def _parse(library: Library, name: str, path: str, text: str) -> None:
    try:
        doc = load_document(text)
    except YamlProblem as problem:
        library.findings.append(Finding(path, problem.line, problem.column, "error", "yaml", problem.message))
        return
    value = doc.value
    if not isinstance(value, dict) or not isinstance(value.get("body"), str):
        library.findings.append(Finding(path, 1, 1, "error", "template",
                                        f'template "{name}" needs a body (and usually a subject): '
                                        "subject: ..., body: ..., optionally locale: en"))
        return
    unknown = [key for key in value if key not in _KEYS]
    for key in unknown:
        line, column = doc.key_position((key,))
        hint = closest(str(key), _KEYS)
        library.findings.append(Finding(path, line, column, "error", "template",
                                        f'a template has subject, body and locale, not "{key}"'
                                        + (f' (did you mean "{hint}"?)' if hint else ""), str(key)))
    for key in ("subject", "body", "locale"):
        if key in value and not isinstance(value[key], str):
            line, column = doc.position((key,))
            library.findings.append(Finding(path, line, column, "error", "template", f"{key} must be text", key))
            return
    for key in ("subject", "body"):
        if isinstance(value.get(key), str):
            try:
                compile_template(value[key])
            except TemplateError as error:
                line, column = doc.position((key,))
                library.findings.append(Finding(path, line, column, "error", "template",
                                                str(error), key))
                return
    if unknown:
        return
    library.templates[name] = NamedTemplate(name=name, path=path, text=text, doc=doc,
                                            subject=value.get("subject"), body=value["body"],
                                            locale=value.get("locale"))


# -- resolving references in a playbook --------------------------------------------------------


@dataclass(frozen=True)
class Use:
    """One place a playbook names a template, and what it is filled into."""

    at: DocPath  # the mapping holding `template:`
    name: str
    fills: dict[str, str]  # template part -> key in that mapping
    replaces: bool  # the mapping itself becomes the body (a hybrid draft)


def _uses(root: Any) -> Iterator[Use]:
    steps = root.get("steps") if isinstance(root, dict) else None
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict):
            continue
        draft = step.get("draft")
        if step.get("kind") == "hybrid" and isinstance(draft, dict) and "template" in draft:
            yield Use(("steps", index, "draft"), str(draft["template"]), {"body": ""}, True)
        for where in (("steps", index), ("steps", index, "publish"), ("steps", index, "override", "compensate")):
            call = _at(root, where)
            args = call.get("with") if isinstance(call, dict) else None
            if isinstance(args, dict) and "template" in args:
                action = str(call.get("do", ""))
                yield Use((*where, "with"), str(args["template"]), _FILLS.get(action, {}), False)


def _at(value: Any, at: DocPath) -> Any:
    for part in at:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            return None
    return value


def template_names(doc: Document) -> list[str]:
    """The templates a playbook names (in file order, once each)."""
    return list(dict.fromkeys(use.name for use in _uses(doc.value)))


Used = list[tuple[NamedTemplate, DocPath]]


def resolve_templates(doc: Document, path: str, library: Library | None) -> tuple[Document, list[Finding], Used]:
    """The document with every `template:` reference replaced by the template's text.

    Returns the expanded document, findings for references that cannot be resolved (located at
    the `template:` key), and each template used with the path of the text it became, so the
    caller can check the template's variables where the template is written.
    """
    uses = list(_uses(doc.value))
    if not uses:
        return doc, [], []
    library = library or Library()
    value = copy.deepcopy(doc.value)
    positions = dict(doc.positions)
    findings: list[Finding] = []
    used: Used = []
    for use in uses:
        key_at = use.at if use.replaces else (*use.at, "template")
        line, column = doc.position(key_at)
        template = library.templates.get(use.name)
        if template is None or not use.fills:
            _blank(value, use)  # reported here; the schema should not also say the text is missing
        if template is None and use.name in library.broken:
            findings += [f for f in library.findings if Path(f.path).stem == use.name]
            continue
        if template is None:
            close = closest(use.name, library.templates)
            hint = f' (did you mean "{close}"?)' if close else ""
            known = ", ".join(sorted(library.templates)) or "none"
            findings.append(Finding(path, line, column, "error", "template",
                                    f'no template named "{use.name}" in the {FOLDER}/ folder beside the '
                                    f"playbooks{hint}; templates there: {known}", _render(key_at)))
            continue
        if not use.fills:
            action = _at(value, use.at[:-1]).get("do")
            findings.append(Finding(path, line, column, "error", "template",
                                    f'{action} cannot take a template; templates fill customer.email, notify.email '
                                    "and notify.chat (subject and body) and a hybrid step's draft",
                                    _render(key_at)))
            continue
        if use.replaces:
            parent = _at(value, use.at[:-1])
            parent[use.at[-1]] = template.body
            used.append((template, use.at))
            continue
        args = _at(value, use.at)
        del args["template"]
        for part, key in use.fills.items():
            text = getattr(template, part)
            if key in args:
                findings.append(Finding(path, line, column, "error", "template",
                                        f'"{key}" is given both here and by template "{use.name}"; keep one',
                                        _render(key_at)))
            elif text is None:
                action = _at(value, use.at[:-1]).get("do")
                findings.append(Finding(path, line, column, "error", "template",
                                        f'template "{use.name}" has no {part}, and {action} needs one; add '
                                        f'"{part}:" to {template.path} or give "{key}" here', _render(key_at)))
                args[key] = ""  # reported here; the schema should not say it again
            else:
                args[key] = text
                positions[(*use.at, key)] = (line, column)
                used.append((template, (*use.at, key)))
    return Document(value=value, positions=positions, key_positions=dict(doc.key_positions),
                    scalars=dict(doc.scalars)), findings, used


def _blank(value: Any, use: Use) -> None:
    if use.replaces:
        _at(value, use.at[:-1])[use.at[-1]] = ""
        return
    args = _at(value, use.at)
    del args["template"]
    for key in use.fills.values():
        args.setdefault(key, "")


def _render(at: DocPath) -> str:
    return render_doc_path(at)
