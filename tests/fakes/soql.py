"""A small SOQL subset for the fake Salesforce: what the connector sends, parsed strictly.

SELECT f, Rel.f FROM Obj [WHERE cond] [ORDER BY f [ASC|DESC], ...] [LIMIT n]
cond: comparisons (= != <> < <= > >= LIKE IN NOT IN) joined by AND / OR, with parentheses.
Literals: 'strings' (backslash escapes), numbers, true/false/null, ISO dates and datetimes.
Anything else raises SoqlError, which the server answers as MALFORMED_QUERY, like Salesforce.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


class SoqlError(ValueError):
    pass


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
""", re.VERBOSE)

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


def parse_datetime(text: str) -> datetime:
    """Salesforce datetimes: 2026-12-02T05:24:49Z, ...+00:00 or ...000+0000."""
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class Token:
    kind: str
    value: Any
    text: str


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise SoqlError(f"unexpected token at {text[position:position + 20]!r}")
        position = match.end()
        kind = match.lastgroup
        raw = match.group()
        if kind == "ws":
            continue
        if kind == "string":
            body = raw[1:-1]
            value = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)
            tokens.append(Token("literal", value, raw))
        elif kind == "datetime":
            tokens.append(Token("literal", parse_datetime(raw), raw))
        elif kind == "date":
            tokens.append(Token("literal", date.fromisoformat(raw), raw))
        elif kind == "number":
            tokens.append(Token("literal", float(raw) if "." in raw else int(raw), raw))
        elif kind == "name" and raw.lower() in ("true", "false", "null"):
            tokens.append(Token("literal", {"true": True, "false": False, "null": None}[raw.lower()], raw))
        else:
            tokens.append(Token(str(kind), raw, raw))
    return tokens


@dataclass
class Comparison:
    field: str
    op: str
    value: Any


@dataclass
class BoolOp:
    op: str  # "and" | "or"
    parts: list[Any]


@dataclass
class Query:
    fields: list[str]
    sobject: str
    where: Any = None
    order_by: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    limit: int | None = None


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise SoqlError("unexpected end of query")
        self.index += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "name" and token.value.upper() == word:
            self.index += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            token = self.peek()
            raise SoqlError(f"expected {word}, found {token.text if token else 'end of query'}")

    def name(self) -> str:
        token = self.next()
        if token.kind != "name":
            raise SoqlError(f"expected a field name, found {token.text}")
        return str(token.value)

    def parse(self) -> Query:
        self.expect_keyword("SELECT")
        fields = [self.name()]
        while self.peek() is not None and self.peek().kind == "punct" and self.peek().value == ",":  # type: ignore[union-attr]
            self.next()
            fields.append(self.name())
        self.expect_keyword("FROM")
        query = Query(fields=fields, sobject=self.name())
        if self.keyword("WHERE"):
            query.where = self.disjunction()
        if self.keyword("ORDER"):
            self.expect_keyword("BY")
            while True:
                name = self.name()
                descending = False
                if self.keyword("DESC"):
                    descending = True
                else:
                    self.keyword("ASC")
                query.order_by.append((name, descending))
                token = self.peek()
                if token is not None and token.kind == "punct" and token.value == ",":
                    self.next()
                    continue
                break
        if self.keyword("LIMIT"):
            token = self.next()
            if token.kind != "literal" or not isinstance(token.value, int):
                raise SoqlError("LIMIT takes a whole number")
            query.limit = token.value
        if self.peek() is not None:
            raise SoqlError(f"unexpected token {self.peek().text}")  # type: ignore[union-attr]
        return query

    def disjunction(self) -> Any:
        parts = [self.conjunction()]
        while self.keyword("OR"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else BoolOp("or", parts)

    def conjunction(self) -> Any:
        parts = [self.atom()]
        while self.keyword("AND"):
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else BoolOp("and", parts)

    def atom(self) -> Any:
        token = self.peek()
        if token is not None and token.kind == "punct" and token.value == "(":
            self.next()
            inner = self.disjunction()
            closing = self.next()
            if closing.value != ")":
                raise SoqlError("missing )")
            return inner
        name = self.name()
        if self.keyword("NOT"):
            self.expect_keyword("IN")
            return Comparison(name, "not in", self.value_list())
        if self.keyword("IN"):
            return Comparison(name, "in", self.value_list())
        if self.keyword("LIKE"):
            return Comparison(name, "like", self.literal())
        op = self.next()
        if op.kind != "op":
            raise SoqlError(f"expected an operator after {name}, found {op.text}")
        return Comparison(name, "!=" if op.value == "<>" else op.value, self.literal())

    def literal(self) -> Any:
        token = self.next()
        if token.kind != "literal":
            raise SoqlError(f"expected a value, found {token.text}")
        return token.value

    def value_list(self) -> list[Any]:
        if self.next().value != "(":
            raise SoqlError("IN takes a parenthesised list")
        values = [self.literal()]
        while True:
            token = self.next()
            if token.value == ")":
                return values
            if token.value != ",":
                raise SoqlError("expected , or ) in an IN list")
            values.append(self.literal())


def parse(text: str) -> Query:
    """Parse one SOQL statement of the supported subset."""
    return _Parser(tokenize(text)).parse()


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op == "in":
        return left in right
    if op == "not in":
        return left not in right
    if op == "like":
        if left is None:
            return False
        pattern = "^" + re.escape(str(right)).replace("%", ".*").replace("_", ".") + "$"
        return re.match(pattern, str(left), re.IGNORECASE | re.DOTALL) is not None
    if left is None or right is None:
        return False  # SOQL: ordering comparisons with null are false
    if isinstance(left, datetime) and isinstance(right, date) and not isinstance(right, datetime):
        raise SoqlError("a datetime field compared with a date literal")
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def evaluate(condition: Any, record: dict[str, Any]) -> bool:
    """True when `record` (field name -> Python value) satisfies `condition`."""
    if condition is None:
        return True
    if isinstance(condition, BoolOp):
        results = (evaluate(part, record) for part in condition.parts)
        return all(results) if condition.op == "and" else any(results)
    return _compare(record.get(condition.field), condition.op, condition.value)


def condition_fields(condition: Any) -> list[str]:
    """Every field a WHERE clause names (the server checks they exist)."""
    if condition is None:
        return []
    if isinstance(condition, BoolOp):
        return [name for part in condition.parts for name in condition_fields(part)]
    return [condition.field]
