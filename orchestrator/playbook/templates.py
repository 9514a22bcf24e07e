"""Text templates for task titles, briefs, notes and CRM fields.

Jinja2 in its immutable sandbox: playbooks are written by RevOps, not reviewed like
code, so a template may read the context but never reach Python internals or change
anything. Output is plain text (no HTML escaping) because it lands in CRM fields.
Undefined names are errors, not blanks, so a typo shows up at lint or render time
instead of as an empty task title. A defined field whose value is null renders as "".
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from types import TracebackType
from typing import Any, NoReturn

import jinja2
from jinja2 import meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg

from orchestrator.hints import unknown_names

__all__ = ["Template", "TemplateError", "TemplateLimitError", "check_variables", "compile_template"]

MAX_TEMPLATE_LENGTH = 20_000
# Every value a template builds (a product, a joined list, a filter's result) and the text it
# fills in are measured against these; anything near them is a mistake, not a brief.
MAX_OUTPUT_LENGTH = 100_000
MAX_VALUE_WEIGHT = 100_000  # characters, list items and dict entries, counted through nesting
MAX_RENDER_WORK = 1_000_000  # the sum of the weights of everything one render builds
MAX_RENDER_SECONDS = 2.0
_MAX_INTEGER_BITS = 14_000  # about 4,200 digits, under Python's own int-to-text limit
_MAX_FORMAT_WIDTH = 200  # "%10d" yes, "%0999999999d" no
# A playbook template fills in values; it does not loop, assign or define code. Loops and
# assignments are how a template could spin or double a value a thousand times, so they are
# refused when it is compiled.
_REFUSED_NODES: dict[type[nodes.Node], str] = {
    nodes.For: "loops ({% for %})",
    nodes.Macro: "macros",
    nodes.CallBlock: "call blocks",
    nodes.FilterBlock: "filter blocks",
    nodes.Extends: "template inheritance",
    nodes.Include: "includes",
    nodes.Import: "imports",
    nodes.FromImport: "imports",
    nodes.Assign: "assignments ({% set %})",
    nodes.AssignBlock: "assignments ({% set %})",
    nodes.With: "{% with %} blocks",
    nodes.Scope: "scopes",
}
# Jinja's globals: lipsum() writes megabytes, range() and cycler() feed loops, namespace()
# makes assignable objects. A playbook template has its context and nothing else.
_REFUSED_GLOBALS = frozenset({"lipsum", "range", "namespace", "cycler", "joiner", "dict"})
# The filters a playbook template may use, each measured (see _guarded). The rest (padding,
# batch, slice, wordwrap, format, random, urlize...) can pad, repeat or loop without bound,
# or have nothing to do in a CRM field.
_ALLOWED_FILTERS = frozenset({
    "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "first", "float", "groupby",
    "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
    "rejectattr", "replace", "reverse", "round", "select", "selectattr", "sort", "string", "sum",
    "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "wordcount",
    "money", "date", "days_until",
})
# Methods a template may call, by type; text methods that pad, repeat or join are not here.
_ALLOWED_METHODS: dict[type, frozenset[str]] = {
    str: frozenset({"upper", "lower", "title", "capitalize", "casefold", "swapcase", "strip", "lstrip",
                    "rstrip", "startswith", "endswith", "split", "rsplit", "splitlines", "count", "find",
                    "rfind", "index", "rindex", "isdigit", "isalpha", "isalnum", "isnumeric", "isdecimal",
                    "isupper", "islower", "isspace", "istitle", "removeprefix", "removesuffix",
                    "partition", "rpartition"}),
    dict: frozenset({"get", "keys", "values", "items"}),
    list: frozenset({"index", "count"}),
    tuple: frozenset({"index", "count"}),
    date: frozenset({"year", "month", "day", "weekday", "isoweekday", "isoformat"}),
    datetime: frozenset({"year", "month", "day", "hour", "minute", "second", "weekday", "isoweekday",
                         "isoformat", "date", "tzinfo"}),
    timedelta: frozenset({"days", "seconds", "total_seconds"}),
}
# printf-style conversion specs: flags, width, precision.
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_STRFTIME_WIDTH = re.compile(r"%[-_0^#]*\d")
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


class TemplateLimitError(TemplateError):
    """A render stopped by a bound (size, work, time) or by a construct that is not allowed.

    The engine parks such a journey as `template_error`: the playbook's author must change
    the template; waiting for better data will not help.
    """

    _PREFIX = "the template tries something that is not allowed: "

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message if message.startswith(self._PREFIX) else self._PREFIX + message, line, column)


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
    if not isinstance(fmt, str) or len(fmt) > 200 or _STRFTIME_WIDTH.search(fmt):
        raise TemplateLimitError('the "date" filter takes a format of up to 200 characters, without widths')
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


# -- bounds -----------------------------------------------------------------------


class _Budget:
    """What one render (or compile) may still spend: a deadline and the work left."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.work_left = MAX_RENDER_WORK

    def spend(self, weight: int) -> None:
        self.work_left -= weight
        if self.work_left < 0:
            raise TemplateLimitError(f"the template builds more than {MAX_RENDER_WORK:,} characters "
                                     "and items in all; fill in fewer or smaller values")
        self.tick()

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(f"the template took longer than {MAX_RENDER_SECONDS:g} s to fill in")


_budget: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _tick() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.tick()


def weight(value: Any, limit: int = MAX_VALUE_WEIGHT) -> int:
    """Characters, items and entries in `value`, counted through nesting, stopping past `limit`.

    A list repeated inside a list counts every time it appears, which is what printing it costs.
    """
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, bool) or item is None:
            total += 1
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, Mapping):
            total += 1 + len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 1 + len(item)
            stack.extend(item)
        else:
            total += 1
    return total


def _measured(value: Any, what: str = "the result") -> Any:
    """`value` if it is within bounds; its weight is spent from the render's budget."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _MAX_INTEGER_BITS:
        raise TemplateLimitError(f"{what} is a number with more than {_MAX_INTEGER_BITS * 3 // 10:,} digits")
    measured = weight(value)
    if measured > MAX_VALUE_WEIGHT:
        raise TemplateLimitError(f"{what} would be larger than {MAX_VALUE_WEIGHT:,} characters or items")
    budget = _budget.get()
    if budget is not None:
        budget.spend(measured)
    return value


def _check_printf(spec: str) -> None:
    for width, precision in _PRINTF_SPEC.findall(spec):
        for number in (width, precision):
            if number == "*":
                raise TemplateLimitError("a width taken from the values (%*d) is not allowed in playbook templates")
            if number and (len(number) > 4 or int(number) > _MAX_FORMAT_WIDTH):
                raise TemplateLimitError(f"a format width or precision above {_MAX_FORMAT_WIDTH} "
                                         f"is not allowed in playbook templates (%{number})")


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be too large, before it is computed."""
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and not isinstance(times, bool):
                if times > 0 and weight(seq, MAX_VALUE_WEIGHT // times + 1) * times > MAX_VALUE_WEIGHT:
                    raise TemplateLimitError("repeating this would be longer than "
                                             f"{MAX_VALUE_WEIGHT:,} characters or items")
    elif operator == "**":
        if isinstance(right, (int, float)) and not isinstance(right, bool):
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                if max(left.bit_length(), 1) * right > _MAX_INTEGER_BITS and abs(left) > 1:
                    raise TemplateLimitError("the power is too large")
            elif abs(right) > 1_000:
                raise TemplateLimitError("the power is too large")
    elif operator == "%" and isinstance(left, str):
        _check_printf(left)
    elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
        if weight(left) + weight(right) > MAX_VALUE_WEIGHT:
            raise TemplateLimitError(f"the result would be larger than {MAX_VALUE_WEIGHT:,} characters or items")


# -- the sandbox ----------------------------------------------------------------------


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, with `~` joins measured like every other operation."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _allowed_attributes(obj: Any) -> frozenset[str] | None:
    for kind in (datetime, date, timedelta, str, dict, list, tuple):
        if isinstance(obj, kind):
            return _ALLOWED_METHODS[kind]
    if isinstance(obj, (int, float, Decimal, bool)):
        return frozenset()
    return None  # other objects: plain fields, no methods (see is_safe_attribute)


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _CodeGenerator

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        check_binop(operator, left, right)
        return _measured(super().call_binop(context, operator, left, right))

    def bounded_concat(self, parts: tuple[Any, ...]) -> str:
        texts = []
        length = 0
        for part in parts:
            _measured(part, "a joined value")
            text = str(_finalize(part))
            length += len(text)
            if length > MAX_VALUE_WEIGHT:
                raise TemplateLimitError(f"the joined text would be longer than {MAX_VALUE_WEIGHT:,} characters")
            texts.append(text)
        return str(_measured("".join(texts)))

    def call(self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        return _measured(super().call(__context, __obj, *args, **kwargs))

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        allowed = _allowed_attributes(obj)
        if allowed is None:
            return not callable(value)
        return attr in allowed

    def wrap_str_format(self, value: Any) -> None:
        # Jinja hands out a sandboxed str.format; playbook templates get none (widths pad without bound).
        return None

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        if isinstance(obj, str) and attribute in dir(str):
            raise jinja2.exceptions.SecurityError(f"text.{attribute}() is not available in playbook templates")
        return super().unsafe_undefined(obj, attribute)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        # Dict keys first, like expressions: a CRM field named "items" or "values"
        # must be the field, not the dict method.
        if isinstance(obj, Mapping) and attribute in obj and not attribute.startswith("_"):
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)


def _guarded(filter_function: Any) -> Any:
    """A filter that is measured: its input and result must be within bounds, and it spends budget."""
    pass_arg = _PassArg.from_obj(filter_function)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        value_index = 1 if pass_arg is not None else 0
        if len(args) > value_index:
            _measured(args[value_index], "the filtered value")
        result = filter_function(*args, **kwargs)
        if isinstance(result, Iterator):
            return _counted(result)
        return _measured(result)

    guarded.__name__ = getattr(filter_function, "__name__", "filter")
    if pass_arg is not None:
        guarded.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return guarded


def _counted(items: Iterator[Any]) -> Iterator[Any]:
    # map/select and friends return generators: each item they yield is measured as it comes.
    for item in items:
        yield _measured(item)


def _replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    """Jinja's replace, refused before it runs when the result would be too long."""
    text, old, new = str(value), str(old), str(new)
    hits = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * (len(new) - len(old)) > MAX_VALUE_WEIGHT:
        raise TemplateLimitError(f"the replaced text would be longer than {MAX_VALUE_WEIGHT:,} characters")
    return text.replace(old, new, -1 if count is None else count)


@jinja2.pass_environment
def _join(environment: jinja2.Environment, value: Any, d: str = "", attribute: str | int | None = None) -> str:
    """Jinja's join, stopping as soon as the text would be too long."""
    items = value if attribute is None else (environment.getitem(item, attribute) for item in value)
    separator = str(d)
    texts: list[str] = []
    length = 0
    for item in items:
        _tick()
        text = str(_finalize(item))
        length += len(text) + (len(separator) if texts else 0)
        if length > MAX_VALUE_WEIGHT:
            raise TemplateLimitError(f"the joined text would be longer than {MAX_VALUE_WEIGHT:,} characters")
        texts.append(text)
    return separator.join(texts)


def _sum(value: Any, attribute: str | None = None, start: Any = 0) -> Any:
    """Jinja's sum, of numbers only (adding lists to lists is quadratic)."""
    if isinstance(start, bool) or not isinstance(start, (int, float, Decimal)):
        raise TemplateLimitError('the "sum" filter adds numbers only')
    total = start
    for item in value:
        _tick()
        number = item.get(attribute) if attribute is not None and isinstance(item, Mapping) else item
        if isinstance(number, bool) or not isinstance(number, (int, float, Decimal)):
            raise TemplateLimitError('the "sum" filter adds numbers only')
        total = _measured(total + number)
    return total


def _tojson(value: Any, indent: int | None = None) -> Any:
    if indent is not None and (not isinstance(indent, int) or not 0 <= indent <= 8):
        raise TemplateLimitError('"tojson" takes an indent from 0 to 8')
    return jinja2.filters.do_tojson(_environment_eval_context(), value, indent)


def _environment_eval_context() -> jinja2.nodes.EvalContext:
    return jinja2.nodes.EvalContext(_environment())


@lru_cache(maxsize=1)
def _environment() -> _Sandbox:
    env = _Sandbox(
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        keep_trailing_newline=True,
        # No constant folding: Jinja would run "%0999999999d" % 1 while compiling, so a
        # playbook's validation would be the thing that hangs.
        optimized=False,
    )
    env.filters.update(money=_money, date=_date, days_until=_days_until, replace=_replace, join=_join,
                       sum=_sum, tojson=_tojson)
    env.filters = {name: _guarded(env.filters[name]) for name in _ALLOWED_FILTERS}
    env.globals.clear()
    return env


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
            _refuse_constructs(ast)
            compiled = env.from_string(ast)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"the template has a syntax error: {exc.message}", line=exc.lineno
            ) from None
        except (RecursionError, MemoryError):
            raise TemplateError("the template is nested too deeply") from None
        compiled.filename = _TEMPLATE_FILENAME
        # frozen: the compiled objects are caches, set once here.
        object.__setattr__(self, "_compiled", compiled)
        object.__setattr__(self, "_ast", ast)

    def variables(self) -> frozenset[str]:
        """Root names the template reads from its context, e.g. {"account", "deal"}."""
        return frozenset(meta.find_undeclared_variables(self._ast))

    def references(self) -> frozenset[str]:
        """Dotted paths read, outermost only, e.g. {"account.name", "deal.amount", "now"}."""
        inner = {id(n.node) for n in self._ast.find_all(nodes.Getattr)}
        found = {path for n in self._ast.find_all((nodes.Getattr, nodes.Name))
                 if id(n) not in inner and (path := _dotted(n))}
        return frozenset(found)

    def render(self, context: Mapping[str, Any]) -> str:
        """Render with `context`; undefined names and sandbox violations raise TemplateError."""
        token = _budget.set(_Budget(MAX_RENDER_SECONDS))
        try:
            text = self._fill_in(context)
        except TemplateError as exc:
            exc.line = exc.line or _template_line(exc.__traceback__)
            raise
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateLimitError(
                str(exc),
                line=_template_line(exc.__traceback__),
            ) from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                self._undefined_message(str(exc)), line=_template_line(exc.__traceback__)
            ) from None
        except (MemoryError, RecursionError, OverflowError) as exc:
            raise TemplateLimitError(
                f"the template is too large to fill in ({type(exc).__name__})",
                line=_template_line(exc.__traceback__),
            ) from None
        except Exception as exc:  # noqa: BLE001 - any failure inside a template is a template problem
            raise TemplateError(
                f"the template could not be filled in: {exc}", line=_template_line(exc.__traceback__)
            ) from None
        finally:
            _budget.reset(token)
        return text

    def _fill_in(self, context: Mapping[str, Any]) -> str:
        # Piece by piece, so the text stops growing as soon as it is too long.
        pieces: list[str] = []
        length = 0
        for piece in self._compiled.generate(dict(context)):
            length += len(piece)
            if length > MAX_OUTPUT_LENGTH:
                raise TemplateLimitError(f"the filled-in text is longer than {MAX_OUTPUT_LENGTH:,} characters")
            pieces.append(piece)
        return "".join(pieces)

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


def _refuse_constructs(ast: nodes.Template) -> None:
    """What a playbook template may not contain, refused with its line when it is compiled."""
    for node_type, what in _REFUSED_NODES.items():
        refused = next(ast.find_all(node_type), None)
        if refused is not None:
            _refuse(f"{what} are not allowed in playbook templates; a template fills in "
                    "values (use {% if %} for choices)", refused)
    for name in ast.find_all(nodes.Name):
        if name.name in _REFUSED_GLOBALS:
            _refuse(f'"{name.name}" is not allowed in playbook templates; a template fills in values '
                    "from its context", name)
    for reach in ast.find_all(nodes.Getattr):
        if reach.attr.startswith("_"):
            _refuse(f'"{reach.attr}" starts with "_": Python internals are not allowed in playbook '
                    "templates; a template reads fields", reach)
    for index in ast.find_all(nodes.Getitem):
        if isinstance(index.arg, nodes.Const) and isinstance(index.arg.value, str) and index.arg.value.startswith("_"):
            _refuse(f'"{index.arg.value}" starts with "_": Python internals are not allowed in '
                    "playbook templates; a template reads fields", index)
    for used in ast.find_all(nodes.Filter):
        if used.name not in _ALLOWED_FILTERS:
            _refuse(f"No filter named {used.name!r}: it is not available in playbook templates "
                    f"(available: {', '.join(sorted(_ALLOWED_FILTERS))})", used)
    for operation in ast.find_all(nodes.BinExpr):
        # Written-out values ("x" * 1000000, "%0999999999d" % 1) are refused before any render.
        if isinstance(operation.left, nodes.Const) and isinstance(operation.right, (nodes.Const, nodes.Tuple)):
            right = operation.right
            right_value = right.value if isinstance(right, nodes.Const) else None
            try:
                check_binop(operation.operator, operation.left.value, right_value)
            except TemplateLimitError as exc:
                _refuse(exc.message, operation)


def _refuse(message: str, node: nodes.Node) -> NoReturn:
    raise TemplateError(message, line=node.lineno)


def compile_template(source: str) -> Template:
    """Compile `source`; a syntax error raises TemplateError with its line."""
    return Template(source)


def check_variables(template: Template, allowed: Iterable[str]) -> list[str]:
    """Messages for root names the template uses that are not in `allowed`."""
    return unknown_names(template.variables(), allowed)
