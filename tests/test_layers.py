"""The layer rules, enforced: who may import which framework or SDK, and no import cycles.

The rules are checked on the real import graph (grimp, the engine behind import-linter),
with `if TYPE_CHECKING:` imports left out since they never run. Each rule is also shown
to fail on a deliberately wrong import added to a copy of the graph.
"""

from __future__ import annotations

import grimp
import pytest

ROOTS = ("orchestrator", "connectors")

# An outside package and the only part of Handoff allowed to import it.
OWNED_IMPORTS = {
    "click": ("orchestrator.cli",),
    "flask": ("orchestrator.api",),
    "flask_smorest": ("orchestrator.api",),
    "flask_limiter": ("orchestrator.api",),
    "apscheduler": ("orchestrator.worker",),
    "simple_salesforce": ("connectors.salesforce",),
    "hubspot": ("connectors.hubspot",),
    "slack_sdk": ("connectors.slack",),
}
# The core stages never reach up into what drives them or out into a particular system.
CORE = ("orchestrator.intake", "orchestrator.journeys", "orchestrator.work")
NOT_FROM_CORE = ("connectors", "orchestrator.api", "orchestrator.cli")
# Connectors talk to the core through its service functions, not the engine's internals.
NOT_FROM_CONNECTORS = ("orchestrator.journeys", "orchestrator.work", "orchestrator.cli", "orchestrator.api")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*ROOTS, include_external_packages=True, exclude_type_checking_imports=True)


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def owned_import_violations(graph: grimp.ImportGraph) -> list[str]:
    found = []
    for external, owners in OWNED_IMPORTS.items():
        if external not in graph.modules:
            continue
        for importer in sorted(graph.find_modules_that_directly_import(external)):
            if _within(importer, ROOTS) and not _within(importer, owners):
                found.append(f"{importer} imports {external}; only {', '.join(owners)} may")
    return found


def direction_violations(graph: grimp.ImportGraph) -> list[str]:
    found = []
    for sources, forbidden in ((CORE, NOT_FROM_CORE), (("connectors",), NOT_FROM_CONNECTORS)):
        for module in sorted(m for m in graph.modules if _within(m, sources)):
            for imported in sorted(graph.find_modules_directly_imported_by(module)):
                if _within(imported, forbidden):
                    found.append(f"{module} imports {imported}")
    return found


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Cycles between the packages and modules directly under orchestrator/ and connectors/."""
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        if not _within(module, ROOTS):
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            if _within(imported, ROOTS) and _package(imported) != _package(module) \
                    and _package(imported) not in ROOTS:
                edges.setdefault(_package(module), set()).add(_package(imported))
    return _strongly_connected(edges)


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    # Tarjan's algorithm, iterative enough for a graph of a few dozen packages.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for neighbour in sorted(edges.get(node, ())):
            if neighbour not in index:
                visit(neighbour)
                low[node] = min(low[node], low[neighbour])
            elif neighbour in on_stack:
                low[node] = min(low[node], index[neighbour])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_frameworks_and_sdks_are_imported_only_where_they_belong(graph):
    assert owned_import_violations(graph) == []


def test_the_core_never_imports_what_drives_it_and_connectors_never_reach_into_the_engine(graph):
    assert direction_violations(graph) == []


def test_there_are_no_import_cycles_between_packages(graph):
    assert cycles(graph) == []


@pytest.mark.parametrize(("importer", "imported", "check"), [
    ("orchestrator.journeys.engine", "click", owned_import_violations),
    ("orchestrator.intake.signals", "apscheduler", owned_import_violations),
    ("connectors", "simple_salesforce", owned_import_violations),
    ("orchestrator.work.tasks", "orchestrator.cli", direction_violations),
    ("connectors", "orchestrator.journeys.steps", direction_violations),
    ("orchestrator.models", "orchestrator.journeys.engine", cycles),
])
def test_each_rule_fails_on_a_deliberately_wrong_import(graph, importer, imported, check):
    wrong = grimp.build_graph(*ROOTS, include_external_packages=True, exclude_type_checking_imports=True)
    assert check(wrong) == []
    wrong.add_import(importer=importer, imported=imported)
    assert check(wrong) != []
