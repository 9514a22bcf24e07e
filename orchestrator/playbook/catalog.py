"""The signal catalog: each signal type Handoff knows, with its payload fields.

The built-in types ship in `signal_catalog.yaml` beside this module. A deployment adds
types (or fields of a built-in type) with a `signals.yaml` or `*.signals.yaml` file in its
playbooks folder, in the same shape. Each field has a kind (its type, which the validator
checks conditions against), a human label and a display format, so that a brief can show
"Renewal amount: $240,000" instead of "amount: 240000":

    spec = catalog.field_spec("renewal.upcoming", "amount")   # FieldSpec(label, kind, format)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from orchestrator.playbook.findings import Finding
from orchestrator.playbook.yamlsafe import DocPath, Document, YamlProblem, load_document, render_doc_path

__all__ = [
    "FORMATS",
    "KINDS",
    "Catalog",
    "CatalogError",
    "FieldSpec",
    "SignalSpec",
    "catalog_files",
    "catalog_near",
    "describe_field",
    "field_spec",
    "is_catalog_file",
    "load_catalog",
    "parse_catalog",
    "render_attributes",
    "shipped_catalog",
]

Kind = Literal["text", "number", "whole", "flag", "date", "datetime", "email"]
Format = Literal["text", "number", "money", "percent", "date", "person"]
KINDS: tuple[str, ...] = ("text", "number", "whole", "flag", "date", "datetime", "email")
FORMATS: tuple[str, ...] = ("text", "number", "money", "percent", "date", "person")

_SHIPPED = Path(__file__).resolve().parent / "signal_catalog.yaml"
# The format a field gets when its file names only the kind.
_DEFAULT_FORMAT: dict[str, str] = {"date": "date", "datetime": "date", "email": "person", "number": "number",
                                   "whole": "number"}


@dataclass(frozen=True)
class FieldSpec:
    """One payload field (or attribute): how it reads to a person and what kind of value it is."""

    name: str
    label: str
    kind: Kind = "text"
    format: Format = "text"


@dataclass(frozen=True)
class SignalSpec:
    """A signal type with its payload fields, by name."""

    type: str
    label: str
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    """Signal types by name; `attributes` holds declared custom fields of account, deal, contact."""

    signals: Mapping[str, SignalSpec] = field(default_factory=dict)
    attributes: Mapping[str, Mapping[str, FieldSpec]] = field(default_factory=dict)

    def signal(self, signal_type: str) -> SignalSpec | None:
        return self.signals.get(signal_type)

    def knows(self, signal_type: str) -> bool:
        return signal_type in self.signals

    def field_spec(self, signal_type: str, name: str) -> FieldSpec | None:
        """The payload field `name` of `signal_type`, or None when the catalog does not list it."""
        spec = self.signals.get(signal_type)
        return spec.fields.get(name) if spec is not None else None

    def fields_of(self, signal_types: Iterable[str]) -> dict[str, FieldSpec]:
        """Payload fields any of these types carries (the first type's spec wins a shared name)."""
        out: dict[str, FieldSpec] = {}
        for signal_type in signal_types:
            spec = self.signals.get(signal_type)
            for name, found in (spec.fields.items() if spec else ()):
                out.setdefault(name, found)
        return out

    def merged(self, other: Catalog) -> Catalog:
        """This catalog extended by `other`: new types are added, fields of known types added or replaced."""
        signals = dict(self.signals)
        for name, spec in other.signals.items():
            base = signals.get(name)
            if base is None:
                signals[name] = spec
            else:
                signals[name] = SignalSpec(name, spec.label or base.label, {**base.fields, **spec.fields})
        attributes = {entity: dict(found) for entity, found in self.attributes.items()}
        for entity, found in other.attributes.items():
            attributes.setdefault(entity, {}).update(found)
        return Catalog(signals, attributes)


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message starts with file:line:col."""


ATTRIBUTE_ENTITIES = ("account", "deal", "contact")


def parse_catalog(text: str, path: str = "<catalog>") -> Catalog:
    """A catalog from YAML text; any problem raises CatalogError naming path:line:col."""
    try:
        doc = load_document(text)
    except YamlProblem as problem:
        raise CatalogError(f"{path}:{problem.line}:{problem.column}: {problem.message}") from None
    root = doc.value
    if not isinstance(root, dict):
        raise CatalogError(f"{path}:1:1: a signal catalog is a mapping with \"signals\" (and \"attributes\")")
    for key in root:
        if key not in ("signals", "attributes"):
            _fail(doc, path, (key,), f'unknown key "{key}"; a catalog has "signals" and "attributes"', key=True)
    signals: dict[str, SignalSpec] = {}
    for name, body in _mapping(doc, path, ("signals",)).items():
        at: DocPath = ("signals", name)
        if not isinstance(body, dict):
            _fail(doc, path, at, "must be a mapping with label and fields")
        for key in body:
            if key not in ("label", "fields"):
                _fail(doc, path, (*at, key), f'unknown key "{key}"; a signal type has "label" and "fields"',
                      key=True)
        label = body.get("label", name)
        if not isinstance(label, str):
            _fail(doc, path, (*at, "label"), "the label must be text")
        fields = {fname: _field(doc, path, (*at, "fields", fname), fname, fbody)
                  for fname, fbody in _mapping(doc, path, (*at, "fields")).items()}
        signals[name] = SignalSpec(name, label, fields)
    attributes: dict[str, dict[str, FieldSpec]] = {}
    for entity in _mapping(doc, path, ("attributes",)):
        if entity not in ATTRIBUTE_ENTITIES:
            _fail(doc, path, ("attributes", entity), f'custom attributes are declared for '
                  f'{", ".join(ATTRIBUTE_ENTITIES)}, not "{entity}"', key=True)
        attributes[entity] = {fname: _field(doc, path, ("attributes", entity, fname), fname, fbody)
                              for fname, fbody in _mapping(doc, path, ("attributes", entity)).items()}
    return Catalog(signals, attributes)


def _mapping(doc: Document, path: str, at: DocPath) -> dict[str, Any]:
    value: Any = doc.value
    for part in at:
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(doc, path, at, "must be a mapping")
    return cast(dict[str, Any], value)


def _field(doc: Document, path: str, at: DocPath, name: str, body: Any) -> FieldSpec:
    if isinstance(body, str):  # shorthand: `seats: whole`
        body = {"kind": body}
    if not isinstance(body, dict):
        _fail(doc, path, at, "a field is a mapping with kind, label and format (or just its kind)")
    for key in body:
        if key not in ("kind", "label", "format"):
            _fail(doc, path, (*at, key), f'unknown key "{key}"; a field has kind, label and format', key=True)
    kind = body.get("kind", "text")
    if kind not in KINDS:
        _fail(doc, path, (*at, "kind"), f'"{kind}" is not a kind; use {", ".join(KINDS)}')
    fmt = body.get("format", _DEFAULT_FORMAT.get(kind, "text"))
    if fmt not in FORMATS:
        _fail(doc, path, (*at, "format"), f'"{fmt}" is not a display format; use {", ".join(FORMATS)}')
    label = body.get("label", name.replace("_", " ").capitalize())
    if not isinstance(label, str) or not label.strip():
        _fail(doc, path, (*at, "label"), "the label must be text")
    return FieldSpec(name, label, cast(Kind, kind), cast(Format, fmt))


def _fail(doc: Document, path: str, at: DocPath, message: str, *, key: bool = False) -> None:
    line, column = doc.key_position(at) if key else doc.position(at)
    raise CatalogError(f"{path}:{line}:{column}: {render_doc_path(at)}: {message}")


def render_attributes(attributes: Mapping[str, Iterable[FieldSpec]], *, source: str) -> str:
    """A catalog file declaring `attributes` (entity -> fields), as a connector described them.

    The text is parsed back before it is returned, so a field of a kind or format the catalog does
    not know raises CatalogError instead of reaching the playbooks folder.
    """
    body = {"attributes": {entity: {spec.name: {"kind": spec.kind, "label": spec.label, "format": spec.format}
                                    for spec in specs}
                           for entity, specs in attributes.items()}}
    text = (f"# Custom fields {source} fills, from its field description (handoff connectors fields).\n"
            "# Written again by that command; declare fields of your own in another signals.yaml.\n"
            + yaml.safe_dump(body, sort_keys=True, allow_unicode=True))
    parse_catalog(text, f"<{source} fields>")
    return text


@lru_cache(maxsize=1)
def shipped_catalog() -> Catalog:
    """The built-in signal types."""
    return parse_catalog(_SHIPPED.read_text(encoding="utf-8"), str(_SHIPPED))


def is_catalog_file(path: Path) -> bool:
    """Catalog extensions sit among the playbooks: `signals.yaml` or `NAME.signals.yaml`."""
    return path.name in ("signals.yaml", "signals.yml") or path.name.endswith((".signals.yaml", ".signals.yml"))


def catalog_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Catalog extension files in (or given as) `paths`, in a stable order."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and is_catalog_file(p))
        elif path.is_file() and is_catalog_file(path):
            found.append(path)
    return list(dict.fromkeys(found))


def load_catalog(paths: Iterable[str | os.PathLike[str]] = ()) -> Catalog:
    """The shipped catalog extended by the catalog files under `paths` (CatalogError if one is wrong)."""
    catalog = shipped_catalog()
    for path in catalog_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CatalogError(f"{path}:1:1: cannot read the signal catalog ({error})") from None
        catalog = catalog.merged(parse_catalog(text, str(path)))
    return catalog


def field_spec(signal_type: str, name: str, *, catalog: Catalog | None = None) -> FieldSpec | None:
    """The payload field `name` of `signal_type` in `catalog` (default: the shipped one)."""
    return (catalog or shipped_catalog()).field_spec(signal_type, name)


def describe_field(signal_type: str, name: str, *, catalog: Catalog | None = None) -> FieldSpec:
    """Like `field_spec`, but a field the catalog does not list gets a label made from its name."""
    found = field_spec(signal_type, name, catalog=catalog)
    return found or FieldSpec(name, name.replace("_", " ").capitalize())


def catalog_near(paths: Iterable[str | os.PathLike[str]]) -> tuple[Catalog, Finding | None]:
    """The catalog for validating `paths`: catalog files inside them and in up to three folders above.

    A single playbook file given on the command line sits below the folder whose signals.yaml
    describes its deployment, so the folders above it are searched too. A broken catalog file is
    reported as a finding and the shipped catalog is used.
    """
    found: list[Path] = []
    for given in paths:
        path = Path(given).resolve()
        found += catalog_files([path])
        folder = path if path.is_dir() else path.parent
        for above in [folder, *folder.parents][: 4]:
            here = [p for p in sorted(above.glob("*.y*ml")) if is_catalog_file(p)]
            if here:
                found += here
                break
    try:
        return load_catalog(dict.fromkeys(found)), None
    except CatalogError as error:
        where, _, message = str(error).partition(": ")
        file, line, column = (where.rsplit(":", 2) + ["1", "1"])[:3]
        return shipped_catalog(), Finding(file, int(line) if line.isdigit() else 1,
                                          int(column) if column.isdigit() else 1, "error", "catalog", message)
