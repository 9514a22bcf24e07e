"""Property tests: whatever RevOps type, the only failure is an ExpressionError."""

from datetime import UTC, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.playbook.expressions import Expression, ExpressionError, parse_expression

# Hypothesis warns that the repr of these nested strategies is large; it is only a repr.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

FIELDS = ["amount", "segment", "health", "closed_at", "tags", "owner", "missing"]
ROOTS = ["account", "deal", "signal", "now"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(),  # naive, as SQLite returns them
    st.dates(),
    st.timedeltas(min_value=timedelta(days=-3650), max_value=timedelta(days=3650)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4)),
    max_leaves=8,
)
contexts = st.fixed_dictionaries({root: values for root in ROOTS})

literals = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(str),
    st.floats(min_value=0, max_value=1e6, allow_nan=False).map(lambda f: f"{f:.3f}"),
    st.sampled_from(['"mid"', "'enterprise'", '""', "true", "false", "null", "14d", "1h30m", "90m", "2w", "[]"]),
)
references = st.builds(
    lambda root, path: ".".join([root, *path]),
    st.sampled_from(ROOTS),
    st.lists(st.sampled_from(FIELDS), max_size=2),
)


def _compose(children):
    binary = st.builds(
        lambda a, op, b: f"({a} {op} {b})",
        children,
        st.sampled_from(["+", "-", "*", "/", "==", "!=", "<", "<=", ">", ">=", "and", "or", "in", "not in"]),
        children,
    )
    unary = st.builds(lambda op, a: f"({op}({a}))", st.sampled_from(["not ", "-"]), children)
    calls = st.one_of(
        st.builds(lambda f, a: f"{f}({a})", st.sampled_from(["len", "lower", "days"]), children),
        st.builds(lambda f, a, b: f"{f}({a}, {b})", st.sampled_from(["contains", "coalesce"]), children, children),
    )
    lists = st.lists(children, max_size=3).map(lambda items: "[" + ", ".join(items) + "]")
    return st.one_of(binary, unary, calls, lists)


expressions = st.recursive(st.one_of(literals, references), _compose, max_leaves=12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=120))
def test_random_text_only_ever_raises_expression_error(source):
    try:
        expr = parse_expression(source)
    except ExpressionError as exc:
        assert exc.message
        assert exc.line >= 1 and exc.column >= 1
    else:
        assert isinstance(expr, Expression)


alphabet = st.sampled_from(list("abdhmnotw.()[]\"',=<>!+-*/ 0123456789_") + ["and", "or", "not", "in", "null"])


@settings(max_examples=400, deadline=None)
@given(st.lists(alphabet, max_size=40).map("".join))
def test_expression_shaped_noise_only_ever_raises_expression_error(source):
    try:
        parse_expression(source)
    except ExpressionError as exc:
        assert 1 <= exc.column <= len(source) + 1


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, contexts)
def test_well_formed_expressions_evaluate_or_raise_expression_error(source, context):
    expr = parse_expression(source)  # the generator only writes valid syntax
    try:
        expr.evaluate(context)
    except ExpressionError as exc:
        assert exc.message
        assert exc.line >= 1 and exc.column >= 1


@given(expressions)
def test_roots_are_the_first_part_of_every_reference(source):
    expr = parse_expression(source)
    assert {ref.split(".")[0] for ref in expr.references()} == set(expr.roots())
    assert expr.roots() <= set(ROOTS)
