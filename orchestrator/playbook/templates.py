"""Text templates for task titles, briefs, notes and CRM fields.

Jinja2 in its immutable sandbox: playbooks are written by RevOps, not reviewed like
code, so a template may read the context but never reach Python internals or change
anything. Output is plain text (no HTML escaping) because it lands in CRM fields.
Undefined names are errors, not blanks, so a typo shows up at lint or render time
instead of as an empty task title. A defined field whose value is null renders as "".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from types import TracebackType
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from orchestrator.hints import unknown_names

__all__ = ["Template", "TemplateError", "check_variables", "compile_template"]

MAX_TEMPLATE_LENGTH = 20_000
# Sequence repetition and powers are the cheap ways to make a template eat memory
# or CPU; anything near these limits is a mistake, not a brief.
_MAX_REPEATED_LENGTH = 100_000
_MAX_EXPONENT = 100
MAX_OUTPUT_LENGTH = 100_000
# A playbook template fills in values; it does not loop or define code. Loops are how a
# template could spin for hours (nested ranges), so they are refused when it is compiled.
_REFUSED_NODES: dict[type[nodes.Node], str] = {
    nodes.For: "loops ({% for %})",
    nodes.Macro: "macros",
    nodes.CallBlock: "call blocks",
    nodes.FilterBlock: "filter blocks",
    nodes.Extends: "template inheritance",
    nodes.Include: "includes",
    nodes.Import: "imports",
    nodes.FromImport: "imports",
}
# Text methods and filters that take a width can ask for gigabytes of padding.
_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "format", "format_map"})
_WIDTH_FILTERS = ("center", "indent", "format", "wordwrap")
_TEMPLATE_FILENAME = "<template>"


class TemplateError(ValueError):
    """A template that cannot be compiled or rendered; `line`/`column` are 1-based."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        return self.message


# -- filters ----------------------------------------------------------------------


def _money(value: Any, symbol: str = "$") -> str | None:
    """12500 -> "$12,500"; cents are shown only when there are some."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise TemplateError(f'the "money" filter needs a number, got "{value}"')
    number = Decimal(str(value))
    sign = "-" if number < 0 else ""
    amount = abs(number)
    text = f"{amount:,.0f}" if amount == amount.to_integral_value() else f"{amount:,.2f}"
    return f"{sign}{symbol}{text}"


def _date(value: Any, fmt: str = "%Y-%m-%d") -> str | None:
    """A date or datetime as text; aware datetimes are shown in UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime(fmt)
    if isinstance(value, date):
        return value.strftime(fmt)
    # Strings are not parsed, on purpose: same rule as expressions, so a payload
    # that happens to hold "2026-11-23" behaves the same everywhere.
    raise TemplateError(f'the "date" filter needs a date, got "{value}"')


def _as_utc(value: date | datetime, what: str) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TemplateError(f'"days_until" got a {what} without a time zone: {value.isoformat()}')
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


@jinja2.pass_context
def _days_until(context: jinja2.runtime.Context, value: Any) -> int | None:
    """Calendar days (UTC dates) from `now` until `value`; negative when past.

    `now` comes from the context when given, else the clock. Counting dates rather
    than 24-hour blocks makes "due tomorrow" 1 whatever the time of day.
    """
    if value is None:
        return None
    if not isinstance(value, date):
        raise TemplateError(f'the "days_until" filter needs a date, got "{value}"')
    now = context.get("now")
    if not isinstance(now, date):
        now = datetime.now(UTC)
    return (_as_utc(value, "date").date() - _as_utc(now, "now").date()).days


def _finalize(value: Any) -> Any:
    # A CRM field that exists but is empty should print nothing, not "None".
    return "" if value is None else value


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                    if len(seq) * times > _MAX_REPEATED_LENGTH:
                        raise jinja2.exceptions.SecurityError("the result would be too long")
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > _MAX_EXPONENT:
            raise jinja2.exceptions.SecurityError("the power is too large")
        return super().call_binop(context, operator, left, right)

    def call(self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, str) and len(result) > MAX_OUTPUT_LENGTH:
            raise jinja2.exceptions.SecurityError("the result would be too long")
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, str) and attribute in _WIDTH_METHODS:
            raise jinja2.exceptions.SecurityError(f"text.{attribute}() is not available in playbook templates")
        # Dict keys first, like expressions: a CRM field named "items" or "values"
        # must be the field, not the dict method.
        if isinstance(obj, Mapping) and attribute in obj and not attribute.startswith("_"):
            return obj[attribute]
        return super().getattr(obj, attribute)


@lru_cache(maxsize=1)
def _environment() -> _Sandbox:
    env = _Sandbox(
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        keep_trailing_newline=True,
    )
    env.filters.update(money=_money, date=_date, days_until=_days_until)
    for name in _WIDTH_FILTERS:
        del env.filters[name]
    env.filters["replace"] = _bounded(env.filters["replace"])
    return env


def _bounded(filter_function: Any) -> Any:
    """A filter whose result may not grow past MAX_OUTPUT_LENGTH (chained replaces multiply)."""
    def bounded(*args: Any, **kwargs: Any) -> Any:
        result = filter_function(*args, **kwargs)
        if isinstance(result, str) and len(result) > MAX_OUTPUT_LENGTH:
            raise jinja2.exceptions.SecurityError("the result would be too long")
        return result
    return jinja2.pass_eval_context(bounded) if getattr(filter_function, "jinja_pass_arg", None) else bounded


# -- templates --------------------------------------------------------------------


def _template_line(tb: TracebackType | None) -> int | None:
    # Jinja rewrites tracebacks so that template frames carry template line numbers.
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _dotted(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        parent = _dotted(node.node)
        return f"{parent}.{node.attr}" if parent else None
    return None


_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined$")
_MISSING_ATTR = re.compile(r"has no attribute '([^']+)'$")


@dataclass(frozen=True)
class Template:
    """A compiled template; equal and hashed by its source text only."""

    source: str
    _compiled: jinja2.Template = field(init=False, compare=False, repr=False, hash=False)
    _ast: nodes.Template = field(init=False, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            raise TemplateError(f"a template must be text, got {self.source!r}")
        if len(self.source) > MAX_TEMPLATE_LENGTH:
            raise TemplateError(f"the template is longer than {MAX_TEMPLATE_LENGTH:,} characters")
        env = _environment()
        try:
            ast = env.parse(self.source, filename=_TEMPLATE_FILENAME)
            compiled = env.from_string(ast)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"the template has a syntax error: {exc.message}", line=exc.lineno
            ) from None
        for node_type, what in _REFUSED_NODES.items():
            refused = next(ast.find_all(node_type), None)
            if refused is not None:
                raise TemplateError(f"{what} are not allowed in playbook templates; a template fills in "
                                    "values (use {% if %} for choices)", line=refused.lineno)
        compiled.filename = _TEMPLATE_FILENAME
        # frozen: the compiled objects are caches, set once here.
        object.__setattr__(self, "_compiled", compiled)
        object.__setattr__(self, "_ast", ast)

    def variables(self) -> frozenset[str]:
        """Root names the template reads from its context, e.g. {"account", "deal"}."""
        return frozenset(meta.find_undeclared_variables(self._ast))

    def render(self, context: Mapping[str, Any]) -> str:
        """Render with `context`; undefined names and sandbox violations raise TemplateError."""
        try:
            text = self._compiled.render(dict(context))
        except TemplateError as exc:
            exc.line = exc.line or _template_line(exc.__traceback__)
            raise
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(
                f"the template tries something that is not allowed: {exc}",
                line=_template_line(exc.__traceback__),
            ) from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                self._undefined_message(str(exc)), line=_template_line(exc.__traceback__)
            ) from None
        except Exception as exc:  # noqa: BLE001 - any failure inside a template is a template problem
            raise TemplateError(
                f"the template could not be filled in: {exc}", line=_template_line(exc.__traceback__)
            ) from None
        if len(text) > MAX_OUTPUT_LENGTH:
            raise TemplateError(f"the filled-in text is longer than {MAX_OUTPUT_LENGTH:,} characters")
        return text

    def _undefined_message(self, jinja_message: str) -> str:
        match = _UNDEFINED_NAME.match(jinja_message)
        if match:
            return f'"{match.group(1)}" is not available to this template'
        match = _MISSING_ATTR.search(jinja_message)
        if match:
            attr = match.group(1)
            paths = sorted(
                {p for n in self._ast.find_all(nodes.Getattr) if n.attr == attr and (p := _dotted(n))}
            )
            if len(paths) == 1:
                return f'"{paths[0]}" has no value: the field "{attr}" does not exist'
            return f'the field "{attr}" does not exist'
        return f"the template uses something that does not exist ({jinja_message})"


def compile_template(source: str) -> Template:
    """Compile `source`; a syntax error raises TemplateError with its line."""
    return Template(source)


def check_variables(template: Template, allowed: Iterable[str]) -> list[str]:
    """Messages for root names the template uses that are not in `allowed`."""
    return unknown_names(template.variables(), allowed)
