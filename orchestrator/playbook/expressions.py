"""A small, safe expression language for playbook conditions (`when`, `until`, branches).

    deal.amount >= 10000 and account.segment in ["mid", "enterprise"]
    now - account.stage_entered_at > 30d
    lower(signal.sentiment) == "negative" or signal.severity in ["high", "urgent"]

Parsed once with a LALR grammar (lark) into a tiny tree that is walked at evaluation;
nothing is ever handed to Python's `eval`. Rules a playbook author can rely on:

- A missing field is `null`, never a crash: a CRM that lacks a field must not stop
  a journey. Ordering comparisons (`<`, `<=`, `>`, `>=`) and `in` against `null` are
  false; `==`/`!=` compare `null` normally; arithmetic with `null` gives `null`.
- Field access reads dict keys first, then object attributes; names starting with
  `_` are refused, and methods read as `null`.
- Dates: a `date` counts as midnight UTC; a datetime without a time zone counts as UTC
  (SQLite hands those back). `datetime - datetime` is a duration; durations are
  written `14d`, `4h`, `1h30m`, `90m`, `2w`.
- Strings are never parsed into dates, even ISO-looking ones, so the same payload
  behaves the same way every time. Convert at the connector instead.
- `true` equals only `true`: booleans are not numbers here.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from lark import Lark, Token, Transformer_NonRecursive, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from orchestrator.durations import DurationError, parse_duration
from orchestrator.hints import unknown_names

__all__ = ["Expression", "ExpressionError", "check_roots", "parse_expression"]

MAX_SOURCE_LENGTH = 2_000
# Deep enough for any real condition, shallow enough that evaluation (recursive)
# stays far from Python's recursion limit.
MAX_DEPTH = 100

_GRAMMAR = r"""
?start: or_test

?or_test: and_test
        | or_test "or" and_test            -> or_
?and_test: not_test
         | and_test "and" not_test         -> and_
?not_test: "not" not_test                  -> not_
         | comparison
?comparison: sum
           | sum COMP_OP sum               -> compare
           | sum "in" sum                  -> in_
           | sum "not" "in" sum            -> not_in
?sum: product
    | sum (PLUS | MINUS) product           -> arith
?product: unary
        | product MUL_OP unary             -> arith
?unary: MINUS unary                        -> neg
      | postfix
?postfix: atom
        | postfix "." NAME                 -> field
?atom: NUMBER                              -> number
     | DURATION                            -> duration
     | STRING                              -> string
     | "true"                              -> true
     | "false"                             -> false
     | "null"                              -> null
     | NAME                                -> name
     | NAME "(" [args] ")"                 -> call
     | "[" [args] "]"                      -> list_
     | "(" or_test ")"
args: or_test ("," or_test)* ","?

COMP_OP: "==" | "!=" | "<=" | ">=" | "<" | ">"
PLUS: "+"
MINUS: "-"
MUL_OP: "*" | "/"
DURATION.2: /\d+[wdhm](\d+[wdhm])*(?![A-Za-z0-9_])/
NUMBER: /\d+(\.\d+)?/
STRING: /"(\\.|[^"\\\n])*"/ | /'(\\.|[^'\\\n])*'/
NAME: /[A-Za-z_][A-Za-z0-9_]*/

%ignore /[ \t\r\n]+/
"""

_FUNCTION_ARITY: dict[str, tuple[int, int | None]] = {
    "len": (1, 1),
    "lower": (1, 1),
    "contains": (2, 2),
    "days": (1, 1),
    "coalesce": (2, None),
}

_VALUE_TERMINALS = frozenset({"NAME", "NUMBER", "STRING", "DURATION", "LSQB", "TRUE", "FALSE", "NULL"})
_CLOSERS = (("RPAR", '")"'), ("RSQB", '"]"'), ("COMMA", '","'))
_OPERATOR_TERMINALS = frozenset({"COMP_OP", "PLUS", "MINUS", "MUL_OP", "AND", "OR", "IN", "NOT", "DOT"})

_DURATION_WORDS = frozenset(
    {"w", "d", "h", "m", "s", "week", "weeks", "day", "days", "hour", "hours", "minute", "minutes", "min", "mins"}
)

# Characters people bring from other languages, with what to write instead.
_CHARACTER_HINTS = {
    "=": 'use "==" to compare',
    "&": 'use "and"',
    "|": 'use "or"',
    "!": 'use "not" or "!="',
}


class ExpressionError(ValueError):
    """An expression that cannot be parsed or evaluated; `line`/`column` are 1-based."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        return self.message


# -- the tree -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    kind: str
    args: tuple[Any, ...]
    line: int
    column: int
    depth: int = 1


def _node(kind: str, args: tuple[Any, ...], at: Any, *children: Any) -> _Node:
    depth = 1 + max((c.depth for c in children if isinstance(c, _Node)), default=0)
    if depth > MAX_DEPTH:
        raise ExpressionError("the expression is nested too deeply; split it up", at.line, at.column)
    return _Node(kind, args, at.line, at.column, depth)


def _decode_string(token: Token) -> str:
    body = token[1:-1]
    escapes = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(0)), body)


@v_args(meta=True)
class _Build(Transformer_NonRecursive):
    """Parse tree -> _Node tree, checking names and function calls as it goes."""

    def number(self, meta: Any, children: list[Token]) -> _Node:
        text = str(children[0])
        value: int | float = float(text) if "." in text else int(text)
        return _node("const", (value,), meta)

    def duration(self, meta: Any, children: list[Token]) -> _Node:
        try:
            value = parse_duration(str(children[0])).calendar
        except DurationError as exc:
            raise ExpressionError(str(exc), meta.line, meta.column) from None
        return _node("const", (value,), meta)

    def string(self, meta: Any, children: list[Token]) -> _Node:
        return _node("const", (_decode_string(children[0]),), meta)

    def true(self, meta: Any, children: list[Any]) -> _Node:
        return _node("const", (True,), meta)

    def false(self, meta: Any, children: list[Any]) -> _Node:
        return _node("const", (False,), meta)

    def null(self, meta: Any, children: list[Any]) -> _Node:
        return _node("const", (None,), meta)

    def name(self, meta: Any, children: list[Token]) -> _Node:
        name = str(children[0])
        _check_name(name, children[0])
        if name in _FUNCTION_ARITY:
            raise ExpressionError(f'"{name}" is a function; call it like {name}(...)', meta.line, meta.column)
        return _node("name", (name,), meta)

    def field(self, meta: Any, children: list[Any]) -> _Node:
        target, token = children
        _check_name(str(token), token)
        return _node("field", (target, str(token)), meta, target)

    def call(self, meta: Any, children: list[Any]) -> _Node:
        token, args = children
        name = str(token)
        arguments = tuple(args or ())
        if name not in _FUNCTION_ARITY:
            close = difflib.get_close_matches(name, list(_FUNCTION_ARITY), n=1)
            hint = f'; did you mean "{close[0]}"?' if close else f" (functions: {', '.join(_FUNCTION_ARITY)})"
            raise ExpressionError(f'"{name}" is not a function{hint}', token.line, token.column)
        low, high = _FUNCTION_ARITY[name]
        if len(arguments) < low or (high is not None and len(arguments) > high):
            wanted = f"{low}" if low == high else f"at least {low}"
            raise ExpressionError(
                f"{name}() takes {wanted} argument{'s' if wanted != '1' else ''}, got {len(arguments)}",
                token.line,
                token.column,
            )
        return _node("call", (name, arguments), meta, *arguments)

    def args(self, meta: Any, children: list[Any]) -> tuple[Any, ...]:
        return tuple(children)

    def list_(self, meta: Any, children: list[Any]) -> _Node:
        items = tuple(children[0] or ())
        return _node("list", (items,), meta, *items)

    def neg(self, meta: Any, children: list[Any]) -> _Node:
        operand = children[-1]
        return _node("neg", (operand,), meta, operand)

    def not_(self, meta: Any, children: list[Any]) -> _Node:
        return _node("not", (children[0],), meta, children[0])

    def and_(self, meta: Any, children: list[Any]) -> _Node:
        return _node("and", tuple(children), meta, *children)

    def or_(self, meta: Any, children: list[Any]) -> _Node:
        return _node("or", tuple(children), meta, *children)

    def compare(self, meta: Any, children: list[Any]) -> _Node:
        left, op, right = children
        return _node("compare", (str(op), left, right), op, left, right)

    def arith(self, meta: Any, children: list[Any]) -> _Node:
        left, op, right = children
        return _node("arith", (str(op), left, right), op, left, right)

    def in_(self, meta: Any, children: list[Any]) -> _Node:
        return _node("in", (children[0], children[1]), meta, *children)

    def not_in(self, meta: Any, children: list[Any]) -> _Node:
        return _node("not_in", (children[0], children[1]), meta, *children)


def _check_name(name: str, token: Token) -> None:
    if name.startswith("_"):
        raise ExpressionError(
            f'"{name}" cannot be used: names starting with "_" are not allowed', token.line or 1,
            token.column or 1
        )


@lru_cache(maxsize=1)
def _parser() -> Lark:
    # The basic lexer keeps keywords reserved everywhere; the contextual one would
    # read "not" as a name where a keyword cannot stand ("a + not(b)").
    return Lark(_GRAMMAR, parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=True)


def _expectation(expected: Iterable[str]) -> str:
    """What the parser wanted, said in a few words rather than as terminal names."""
    wanted = set(expected)
    if wanted == {"NAME"}:
        return "a field name"
    if wanted & _VALUE_TERMINALS:
        return "a value (a field, a number, a quoted text or a list)"
    parts = [shown for terminal, shown in _CLOSERS if terminal in wanted]
    if wanted & _OPERATOR_TERMINALS:
        parts.append('an operator such as "and", "==" or "+"')
    return " or ".join(parts)


def _syntax_error(source: str, exc: UnexpectedInput) -> ExpressionError:
    line = exc.line if isinstance(exc.line, int) and exc.line > 0 else 1
    column = exc.column if isinstance(exc.column, int) and exc.column > 0 else 1
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        char = source[pos] if pos < len(source) else ""
        hint = _CHARACTER_HINTS.get(char)
        if char in "\"'":
            message = "a quoted text is not closed"
        else:
            message = f'unexpected character "{char}"'
        return ExpressionError(f"{message}; {hint}" if hint else message, line, column)
    wanted: Iterable[str] = getattr(exc, "expected", ()) or ()
    if isinstance(exc, UnexpectedToken) and exc.interactive_parser is not None:
        # The LALR error state over-approximates; asking the parser is exact.
        try:
            wanted = exc.interactive_parser.accepts()
        except LarkError:
            pass
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        if exc.token.type == "COMP_OP" and not set(wanted) & (_VALUE_TERMINALS | {"COMP_OP"}):
            return ExpressionError(
                f'unexpected "{exc.token}"; compare two things at a time and join comparisons with "and"',
                line,
                column,
            )
        expected = _expectation(wanted)
        message = f'unexpected "{exc.token}"'
        if exc.token.type == "NAME" and str(exc.token).lower() in _DURATION_WORDS:
            return ExpressionError(
                f'{message}; write durations as one word, e.g. "14d", "4h", "1h30m" or "2w"', line, column
            )
        if expected:
            message += f"; expected {expected}"
        return ExpressionError(message, line, column)
    # The expression stopped in the middle; point just past its last character.
    lines = source.rstrip().split("\n")
    expected = _expectation(wanted)
    message = "the expression ends too early"
    if expected:
        message += f"; expected {expected}"
    return ExpressionError(message, len(lines), len(lines[-1]) + 1)


# -- evaluation ---------------------------------------------------------------------

_MISSING = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _as_datetime(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _normalize(value: Any) -> Any:
    """Bring values to one comparable form: dates to aware datetimes, Decimals to floats."""
    if isinstance(value, date):
        return _as_datetime(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if len(value) <= 40 else f'"{value[:37]}..."'
    if isinstance(value, timedelta):
        return f"a duration of {value}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if _is_number(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a record"
    return f"a {type(value).__name__}"


def _kind(value: Any) -> str:
    if _is_number(value):
        return "number"
    if isinstance(value, date):
        return "date"
    if isinstance(value, bool):
        return "bool"
    for kind, types in (("text", str), ("duration", timedelta), ("list", (list, tuple))):
        if isinstance(value, types):
            return kind
    return "other"


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    a, b = _normalize(a), _normalize(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - exotic objects from a payload compare as unequal
        return False


_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _read_field(value: Any, name: str) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        found = value.get(name, _MISSING)
        if found is not _MISSING:
            return found
    if isinstance(value, (str, bytes, int, float, Decimal, bool, list, tuple, date, timedelta)):
        # Attributes of plain values ("x".upper, d.year) are Python, not data.
        return None
    found = getattr(value, name, None)
    return None if callable(found) else found


class _Evaluator:
    def __init__(self, context: Mapping[str, Any]) -> None:
        self.context = context

    def fail(self, node: _Node, message: str) -> ExpressionError:
        return ExpressionError(message, node.line, node.column)

    def eval(self, node: _Node) -> Any:
        return getattr(self, f"eval_{node.kind}")(node)

    def eval_const(self, node: _Node) -> Any:
        return node.args[0]

    def eval_name(self, node: _Node) -> Any:
        return self.context.get(node.args[0])

    def eval_field(self, node: _Node) -> Any:
        target, name = node.args
        return _read_field(self.eval(target), name)

    def eval_list(self, node: _Node) -> list[Any]:
        return [self.eval(item) for item in node.args[0]]

    def eval_not(self, node: _Node) -> bool:
        return not self.truthy(node.args[0])

    def eval_and(self, node: _Node) -> bool:
        return self.truthy(node.args[0]) and self.truthy(node.args[1])

    def eval_or(self, node: _Node) -> bool:
        return self.truthy(node.args[0]) or self.truthy(node.args[1])

    def truthy(self, node: _Node) -> bool:
        value = self.eval(node)
        if isinstance(value, (Mapping, list, tuple, str, bool, int, float, Decimal, timedelta)) or value is None:
            return bool(value)
        return True

    def eval_neg(self, node: _Node) -> Any:
        value = self.eval(node.args[0])
        if value is None:
            return None
        if _is_number(value) or isinstance(value, timedelta):
            return -value
        raise self.fail(node, f"cannot put a minus sign before {_show(value)}")

    def eval_compare(self, node: _Node) -> bool:
        op, left_node, right_node = node.args
        left, right = self.eval(left_node), self.eval(right_node)
        if op == "==":
            return _equal(left, right)
        if op == "!=":
            return not _equal(left, right)
        if left is None or right is None:
            return False
        kind = _kind(left)
        if kind not in ("number", "date", "text", "duration") or kind != _kind(right):
            raise self.fail(node, f"cannot compare {_show(left)} with {_show(right)}")
        return _ORDERING[op](_normalize(left), _normalize(right))

    def membership(self, node: _Node) -> bool | None:
        needle, haystack = self.eval(node.args[0]), self.eval(node.args[1])
        if haystack is None:
            return None
        if isinstance(haystack, str):
            if needle is None:
                return False
            if not isinstance(needle, str):
                raise self.fail(node, f"cannot look for {_show(needle)} inside the text {_show(haystack)}")
            return needle in haystack
        if isinstance(haystack, Mapping):
            haystack = list(haystack.keys())
        if isinstance(haystack, (list, tuple, set, frozenset)):
            return any(_equal(needle, item) for item in haystack)
        raise self.fail(node, f'"in" needs a list or a text on its right, got {_show(haystack)}')

    def eval_in(self, node: _Node) -> bool:
        return self.membership(node) is True

    def eval_not_in(self, node: _Node) -> bool:
        # A missing list is unknown, so neither "in" nor "not in" holds.
        return self.membership(node) is False

    def eval_arith(self, node: _Node) -> Any:
        op, left_node, right_node = node.args
        left, right = self.eval(left_node), self.eval(right_node)
        if left is None or right is None:
            return None
        try:
            result = _ARITHMETIC[op](_normalize(left), _normalize(right))
        except ZeroDivisionError:
            raise self.fail(node, f"cannot divide {_show(left)} by zero") from None
        except OverflowError:
            raise self.fail(node, "the result is too large") from None
        except (ValueError, ArithmeticError):
            raise self.fail(node, f"cannot compute {_show(left)} {op} {_show(right)}") from None
        if result is NotImplemented:
            verb = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide"}[op]
            pair = {
                "+": f"{_show(left)} and {_show(right)}",
                "-": f"{_show(right)} from {_show(left)}",
                "*": f"{_show(left)} by {_show(right)}",
                "/": f"{_show(left)} by {_show(right)}",
            }[op]
            raise self.fail(node, f"cannot {verb} {pair}")
        if isinstance(result, float) and not math.isfinite(result):
            raise self.fail(node, "the result is too large")
        return result

    def eval_call(self, node: _Node) -> Any:
        name, arg_nodes = node.args
        if name == "coalesce":
            for arg in arg_nodes:
                value = self.eval(arg)
                if value is not None:
                    return value
            return None
        args = [self.eval(a) for a in arg_nodes]
        if name == "contains":
            haystack, needle = args
            if haystack is None:
                return False
            if isinstance(haystack, str):
                if not isinstance(needle, str):
                    return False
                return needle in haystack
            if isinstance(haystack, Mapping):
                haystack = list(haystack.keys())
            if isinstance(haystack, (list, tuple, set, frozenset)):
                return any(_equal(needle, item) for item in haystack)
            raise self.fail(node, f"contains() needs a list or a text first, got {_show(haystack)}")
        (value,) = args
        if value is None:
            return None
        if name == "len":
            if isinstance(value, (str, list, tuple, Mapping)):
                return len(value)
            raise self.fail(node, f"len() needs a list or a text, got {_show(value)}")
        if name == "lower":
            if isinstance(value, str):
                return value.lower()
            raise self.fail(node, f"lower() needs a text, got {_show(value)}")
        if name == "days":
            if not _is_number(value):
                raise self.fail(node, f"days() needs a number, got {_show(value)}")
            try:
                return timedelta(days=float(value))
            except (OverflowError, ValueError):
                raise self.fail(node, f"days({value}) is not a usable number of days") from None
        raise AssertionError(f"unknown function {name}")  # pragma: no cover - checked at parse


def _add(a: Any, b: Any) -> Any:
    if _is_number(a) and _is_number(b):
        return a + b
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    if isinstance(a, (datetime, timedelta)) and isinstance(b, timedelta):
        return a + b
    if isinstance(a, timedelta) and isinstance(b, datetime):
        return b + a
    return NotImplemented


def _sub(a: Any, b: Any) -> Any:
    if _is_number(a) and _is_number(b):
        return a - b
    if isinstance(a, datetime) and isinstance(b, (datetime, timedelta)):
        return a - b
    if isinstance(a, timedelta) and isinstance(b, timedelta):
        return a - b
    return NotImplemented


def _mul(a: Any, b: Any) -> Any:
    if _is_number(a) and _is_number(b):
        return a * b
    if isinstance(a, timedelta) and _is_number(b):
        return a * float(b)
    if _is_number(a) and isinstance(b, timedelta):
        return b * float(a)
    return NotImplemented


def _div(a: Any, b: Any) -> Any:
    if _is_number(a) and _is_number(b):
        return a / b
    if isinstance(a, timedelta) and (_is_number(b) or isinstance(b, timedelta)):
        return a / (float(b) if _is_number(b) else b)
    return NotImplemented


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {"+": _add, "-": _sub, "*": _mul, "/": _div}


# -- public API -----------------------------------------------------------------------


def _walk(node: _Node) -> Iterable[_Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        for arg in current.args:
            if isinstance(arg, _Node):
                stack.append(arg)
            elif isinstance(arg, tuple):
                stack.extend(a for a in arg if isinstance(a, _Node))


def _path(node: _Node) -> str | None:
    if node.kind == "name":
        return node.args[0]
    if node.kind == "field":
        parent = _path(node.args[0])
        return f"{parent}.{node.args[1]}" if parent else None
    return None


@dataclass(frozen=True)
class Expression:
    """A parsed expression; equal and hashed by its source text only."""

    source: str
    _tree: _Node = field(init=False, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        # frozen: the tree is a cache of `source`, set once here.
        object.__setattr__(self, "_tree", _parse(self.source))

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """Evaluate against `context` (root name -> dict or object); raises ExpressionError."""
        try:
            return _Evaluator(context).eval(self._tree)
        except ExpressionError:
            raise
        except RecursionError:
            raise ExpressionError("the expression is nested too deeply; split it up") from None

    def references(self) -> frozenset[str]:
        """Dotted paths read, e.g. {"deal.amount", "account.segment", "now"}."""
        # Asked for every signal a playbook's condition sees (missing-field checks): walked once.
        known: frozenset[str] | None = self.__dict__.get("_references")
        if known is None:
            known = self._find_references()
            object.__setattr__(self, "_references", known)
        return known

    def _find_references(self) -> frozenset[str]:
        paths: set[str] = set()
        inner: set[int] = set()
        for node in _walk(self._tree):
            if node.kind == "field":
                inner.add(id(node.args[0]))
        for node in _walk(self._tree):
            if node.kind in ("name", "field") and id(node) not in inner and (path := _path(node)):
                paths.add(path)
        return frozenset(paths)

    def roots(self) -> frozenset[str]:
        """Root names read, e.g. {"deal", "account", "now"}."""
        return frozenset(n.args[0] for n in _walk(self._tree) if n.kind == "name")


def _parse(source: str) -> _Node:
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be text, got {_show(source)}")
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_SOURCE_LENGTH:,} characters; split it up")
    if not source.strip():
        raise ExpressionError("the expression is empty")
    try:
        tree = _parser().parse(source)
        return _Build().transform(tree)
    except ExpressionError:
        raise
    except UnexpectedInput as exc:
        raise _syntax_error(source, exc) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, ExpressionError):
            raise exc.orig_exc from None
        raise ExpressionError(f"the expression could not be read: {exc.orig_exc}") from None
    except (LarkError, RecursionError) as exc:
        raise ExpressionError(f"the expression could not be read: {exc}") from None


def parse_expression(source: str) -> Expression:
    """Parse `source`; syntax errors raise ExpressionError with line and column."""
    return Expression(source)


def check_roots(expr: Expression, allowed: Iterable[str]) -> list[str]:
    """Messages for root names the expression uses that are not in `allowed`."""
    return unknown_names(expr.roots(), allowed)
