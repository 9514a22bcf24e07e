"""The flow graph of a playbook, as settled in DESIGN.md.

Steps run in file order; goto, branch rules/otherwise, on_timeout and on_reject jump
to a step id; exit ends the journey; a wait continues with the next step when its
signal or condition arrives. A branch input that no rule matches leaves the flow for
the exception queue, so a branch without `otherwise` has only its rules' edges.
Lint and the engine's simulator both read the flow from here.
"""

from __future__ import annotations

from orchestrator.playbook.actions import get_action
from orchestrator.playbook.model import (
    AutomatedStep,
    BranchStep,
    ExitStep,
    GotoStep,
    HumanStep,
    HybridStep,
    Jump,
    Oversight,
    Playbook,
    RouteStep,
    SplitStep,
    Step,
    WaitStep,
)

__all__ = ["arrival_successor", "loops_without_pause", "pauses", "reachable", "successors"]


def _target(jump: Jump) -> list[str]:
    return [jump.goto] if jump.goto and not jump.exit else []


def _next(playbook: Playbook, step: Step) -> list[str]:
    following = playbook.next_step_id(step.id)
    return [following] if following else []


def arrival_successor(playbook: Playbook, step: WaitStep) -> list[str]:
    """Where a wait goes when its signal or condition arrives (not on timeout)."""
    return _next(playbook, step)


def successors(playbook: Playbook, step: Step) -> list[str]:
    """Step ids control may pass to after `step`; the end of the journey is not listed."""
    if isinstance(step, ExitStep):
        return []
    if isinstance(step, GotoStep):
        return [step.to]
    if isinstance(step, BranchStep):
        out = [target for rule in step.rules for target in _target(rule.goto)]
        if step.otherwise:
            out += _target(step.otherwise)
        return _unique(out)
    if isinstance(step, WaitStep):
        return _unique(_next(playbook, step) + _target(step.on_timeout))
    if isinstance(step, SplitStep):
        return _unique([t for variant in step.variants for t in _target(variant.goto)])
    if isinstance(step, RouteStep):
        # Each listed category's automated path, and where a person's own decision continues.
        human = _target(step.on_human) if step.on_human else _next(playbook, step)
        return _unique([t for _, jump in step.automated for t in _target(jump)] + human)
    if isinstance(step, AutomatedStep) and step.on_reject:
        # A rejected action skips to on_reject; an approved one continues in order.
        return _unique(_next(playbook, step) + _target(step.on_reject))
    return _next(playbook, step)


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def reachable(playbook: Playbook, start: list[str] | None = None) -> set[str]:
    """Step ids reachable from `start` (default: the first step), `start` included."""
    known = {s.id for s in playbook.steps}
    todo = list(start if start is not None else [playbook.steps[0].id])
    seen: set[str] = set()
    while todo:
        step_id = todo.pop()
        if step_id in seen or step_id not in known:
            continue
        seen.add(step_id)
        todo.extend(successors(playbook, playbook.step(step_id)))
    return seen


def pauses(step: Step) -> bool:
    """True when the journey surely stops at this step until something outside happens:
    a signal or timeout (a wait `for` a signal), a person finishing a task (human,
    hybrid), or an approval (in_the_loop).

    Not a pause: a wait with only `until` (it moves on at once when the condition already
    holds), nor an in_the_loop customer-facing step (a cap or a sensitive signal skips it).
    """
    if isinstance(step, WaitStep):
        return step.signal is not None
    if isinstance(step, (HumanStep, HybridStep)):
        return True
    return (isinstance(step, AutomatedStep) and step.oversight == Oversight.IN_THE_LOOP
            and not get_action(step.call.action).customer_facing)


def loops_without_pause(playbook: Playbook) -> list[list[str]]:
    """Cycles made only of steps that never pause, each in file order.

    Such a loop would run forever within one engine tick. Found as the strongly
    connected components of the graph restricted to non-pausing steps.
    """
    order = {s.id: i for i, s in enumerate(playbook.steps)}
    nodes = [s.id for s in playbook.steps if not pauses(s)]
    allowed = set(nodes)
    edges = {n: [t for t in successors(playbook, playbook.step(n)) if t in allowed] for n in nodes}
    loops = []
    for component in _strongly_connected(nodes, edges):
        if len(component) > 1 or component[0] in edges[component[0]]:
            loops.append(sorted(component, key=order.__getitem__))
    return sorted(loops, key=lambda c: order[c[0]])


def _strongly_connected(nodes: list[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative so a long playbook cannot hit the recursion limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = edges[node]
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                result.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return result
