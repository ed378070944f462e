"""What the state machines share: their enums' base, and the checks of their tables.

Each machine keeps its whole rule set in one table,
``{(state, input type): frozenset of possible next states}``, and calls
``check_table`` at import, so a table that leaves a state unreachable or lets a
terminal state out fails the moment the module loads.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

S = TypeVar("S", bound=enum.Enum)


class Symbol(enum.Enum):
    """An enum whose members hash by identity, in C.

    ``enum.Enum`` hashes a member by its name in Python code. States and
    outcomes key the transition tables and a driver's counters several times
    an attempt; members are singletons, so identity is their equality.
    """

    __hash__ = object.__hash__


def check_table(
    name: str,
    table: Mapping[tuple[S, type], frozenset[S]],
    states: type[S],
    initial: S,
    terminal: frozenset[S],
) -> None:
    """Raise ``AssertionError`` unless every state is reachable and terminals have no exits."""
    for (state, _), targets in table.items():
        if state in terminal:
            raise AssertionError(f"{name}: terminal state {state.name} has an exit")
        if not targets:
            raise AssertionError(f"{name}: {state.name} has an input with no next state")
    reachable = {initial}
    frontier = [initial]
    while frontier:
        current = frontier.pop()
        for (state, _), targets in table.items():
            if state is current:
                for target in targets - reachable:
                    reachable.add(target)
                    frontier.append(target)
    missing = set(states) - reachable
    if missing:
        raise AssertionError(f"{name}: unreachable states {sorted(s.name for s in missing)}")
    for state in set(states) - terminal:
        if not any(s is state for s, _ in table):
            raise AssertionError(f"{name}: non-terminal state {state.name} has no exit")
