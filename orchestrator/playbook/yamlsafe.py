"""Safe YAML loading that remembers where every value came from.

PyYAML composes the node tree (which carries line and column); we build the plain
Python values ourselves so that every value, and every mapping key, keeps its
position under its document path, e.g. ("steps", 2, "sla", "due").

Why not `yaml.safe_load`: it reads `on`/`off`/`yes`/`no` as booleans (YAML 1.1), so
`enroll: {on: deal.closed_won}` would arrive as `{True: ...}`, it forgets positions,
silently keeps the last of two duplicate keys, and expands aliases without limit.
Here booleans follow the YAML 1.2 core schema, duplicates and non-text keys are
refused, custom tags are refused, and the size of the file and of the expanded
document are capped so that a "billion laughs" file fails fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["DocPath", "Document", "YamlProblem", "load_document", "render_doc_path"]

DocPath = tuple[str | int, ...]

MAX_BYTES = 256 * 1024
MAX_ALIASES = 100
# Expanded values, counting every alias expansion: a normal playbook has a few hundred.
MAX_VALUES = 20_000
MAX_DEPTH = 40

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_SCALAR_TAGS = {_STR, _INT, _FLOAT, _BOOL, _NULL}


class YamlProblem(Exception):
    """The file is not YAML we accept; line and column are 1-based."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


@dataclass(frozen=True)
class ScalarSpan:
    """How a scalar was written, so errors inside it (an expression) can be located."""

    line: int
    column: int
    style: str | None  # None for plain, '"' or "'" for quoted, '|' or '>' for blocks
    single_line: bool


@dataclass
class Document:
    """Plain values plus where each one (and each mapping key) was written."""

    value: Any
    positions: dict[DocPath, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[DocPath, tuple[int, int]] = field(default_factory=dict)
    scalars: dict[DocPath, ScalarSpan] = field(default_factory=dict)

    def position(self, path: DocPath) -> tuple[int, int]:
        """Position of the value at `path`, or of its nearest ancestor that exists."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(path[:end])
            if found:
                return found
        return (1, 1)

    def key_position(self, path: DocPath) -> tuple[int, int]:
        """Position of the key that introduces `path` (falls back to the value)."""
        return self.key_positions.get(path) or self.position(path)


def render_doc_path(path: DocPath) -> str:
    """("steps", 2, "sla", "due") -> "steps[2].sla.due"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars and an alias budget."""

    yaml_implicit_resolvers: dict[Any, Any] = {}

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.alias_uses = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            self.alias_uses += 1
            if self.alias_uses > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise YamlProblem(
                    f"the file uses more than {MAX_ALIASES} aliases (*name); write the values out",
                    mark.line + 1,
                    mark.column + 1,
                )
        return super().compose_node(parent, index)


def _core(tag: str, pattern: str, first: str) -> None:
    _Loader.add_implicit_resolver(tag, re.compile(pattern, re.VERBOSE), list(first))


_core(_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_core(_NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""])  # type: ignore[arg-type]
_core(_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789")
_core(
    _FLOAT,
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    "-+0123456789.",
)
_core(_MERGE, r"^(?:<<)$", "<")


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _scalar(node: ScalarNode) -> Any:
    text = node.value
    tag = node.tag
    if tag == _STR:
        return text
    if tag == _NULL:
        return None
    if tag == _BOOL:
        if text.lower() not in ("true", "false"):
            raise YamlProblem(f'"{text}" is not true or false', *_mark(node))
        return text.lower() == "true"
    if tag == _INT:
        try:
            if text.startswith(("0o", "0x")):
                return int(text, 0)
            return int(text)
        except ValueError:
            raise YamlProblem(f'"{text}" is not a whole number', *_mark(node)) from None
    if tag == _FLOAT:
        try:
            return float(text.replace(".inf", "inf").replace(".Inf", "inf").replace(".INF", "inf")
                         .replace(".nan", "nan").replace(".NaN", "nan").replace(".NAN", "nan"))
        except ValueError:
            raise YamlProblem(f'"{text}" is not a number', *_mark(node)) from None
    raise _bad_tag(node)


def _bad_tag(node: Node) -> YamlProblem:
    return YamlProblem(
        f"the tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed in a playbook; "
        "remove it and write a plain value",
        *_mark(node),
    )


class _Builder:
    """Turns the node tree into plain values, recording positions by document path."""

    def __init__(self, document: Document) -> None:
        self.doc = document
        self.values = 0

    def build(self, node: Node, path: DocPath) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise YamlProblem(
                "the file expands to too many values (aliases repeated inside aliases?); "
                "write it out plainly",
                *_mark(node),
            )
        if len(path) > MAX_DEPTH:
            raise YamlProblem(f"the file is nested more than {MAX_DEPTH} levels deep", *_mark(node))
        self.doc.positions[path] = _mark(node)
        if isinstance(node, ScalarNode):
            end = node.end_mark
            self.doc.scalars[path] = ScalarSpan(
                *_mark(node), style=node.style, single_line=end.line == node.start_mark.line
            )
            return _scalar(node)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                raise _bad_tag(node)
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != _MAP:
                raise _bad_tag(node)
            return self._mapping(node, path)
        raise _bad_tag(node)  # pragma: no cover - PyYAML has no other node kinds

    def _mapping(self, node: MappingNode, path: DocPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE:
                raise YamlProblem(
                    "merge keys (<<) are not supported in playbooks; write the keys out",
                    *_mark(key_node),
                )
            if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                shown = key_node.value if isinstance(key_node, ScalarNode) else "a list or mapping"
                raise YamlProblem(
                    f'the key "{shown}" must be a name, not a number, true/false or empty; '
                    f'put it in quotes if you mean the text "{shown}"'
                    if isinstance(key_node, ScalarNode)
                    else f"a key must be a name, not {shown}",
                    *_mark(key_node),
                )
            key = key_node.value
            if key in out:
                first = self.doc.key_positions[(*path, key)]
                raise YamlProblem(
                    f'the key "{key}" appears twice in the same mapping '
                    f"(first at line {first[0]}); keep one",
                    *_mark(key_node),
                )
            self.doc.key_positions[(*path, key)] = _mark(key_node)
            out[key] = self.build(value_node, (*path, key))
        return out


def _yaml_error_position(error: yaml.YAMLError) -> tuple[int, int]:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    if mark is not None:
        return mark.line + 1, mark.column + 1
    return 1, 1


def _yaml_error_message(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.reader.ReaderError):
        return "the file contains a character that is not allowed in YAML (a control character?)"
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    text = f"{context}: {problem}" if context else problem
    return f"this is not valid YAML ({text})"


_INDENTATION_PROBLEMS = ("mapping values are not allowed here", "expected <block end>")


def _explained(text: str, error: yaml.YAMLError) -> YamlProblem:
    """The parser's complaint in words a playbook author can act on, at the line to fix."""
    lines = text.splitlines()
    for number, written in enumerate(lines, start=1):
        indent = written[: len(written) - len(written.lstrip(" \t"))]
        if "\t" in indent:
            # YAML forbids tabs in indentation; PyYAML's own message names a token instead.
            return YamlProblem("this line is indented with a tab; use spaces, not tabs", number, indent.index("\t") + 1)
    message = _yaml_error_message(error)
    line, column = _yaml_error_position(error)
    if any(words in message for words in _INDENTATION_PROBLEMS) and 0 < line <= len(lines):
        wrong = lines[line - 1]
        return YamlProblem(
            "this line is indented wrongly: the keys of one mapping must start in the same column "
            "(and a list item's keys two spaces after its dash)", line, len(wrong) - len(wrong.lstrip(" ")) + 1)
    return YamlProblem(message, line, column)


def _reader_position(text: str, error: yaml.reader.ReaderError) -> tuple[int, int]:
    before = text[: error.position]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


def decode(data: bytes) -> str:
    """File bytes as text; a size or encoding problem becomes a YamlProblem."""
    if len(data) > MAX_BYTES:
        raise YamlProblem(f"the file is larger than {MAX_BYTES // 1024} KiB; a playbook is far smaller")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        raise YamlProblem("the file is not UTF-8 text", line, column) from None


def load_document(text: str) -> Document:
    """Parse one YAML document; anything we refuse raises YamlProblem with a position."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlProblem(f"the file is larger than {MAX_BYTES // 1024} KiB; a playbook is far smaller")
    loader: _Loader | None = None
    try:
        try:
            loader = _Loader(text)
            root = loader.get_single_node()
        except yaml.composer.ComposerError as error:
            if "expected a single document" in str(error):
                line, column = _yaml_error_position(error)
                raise YamlProblem(
                    "the file holds more than one YAML document (---); keep one playbook per file",
                    line,
                    column,
                ) from None
            raise
    except YamlProblem:
        raise
    except yaml.reader.ReaderError as error:
        raise YamlProblem(_yaml_error_message(error), *_reader_position(text, error)) from None
    except yaml.YAMLError as error:
        raise _explained(text, error) from None
    except RecursionError:
        raise YamlProblem(f"the file is nested more than {MAX_DEPTH} levels deep") from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        raise YamlProblem("the file is empty; a playbook needs at least id, name, stage and steps")
    document = Document(value=None)
    document.value = _Builder(document).build(root, ())
    return document
