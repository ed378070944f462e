"""What the state machines share: their enums' base, the checks of their tables, and
a cheap way to build their frozen records.

Each machine keeps its whole rule set in one table,
``{(state, input type): frozenset of possible next states}``, and calls
``check_table`` at import, so a table that leaves a state unreachable or lets a
terminal state out fails the moment the module loads.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import attrs

S = TypeVar("S", bound=enum.Enum)
R = TypeVar("R")


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


def positional_builder(cls: type[R]) -> Callable[..., R]:
    """A function making ``cls(*fields)`` from every field's value, in order, at half the
    cost: for the records machines and stores build on every delivery's way.

    A frozen attrs class sets each field through a generic ``object.__setattr__``
    (0.66 us for a ``Delivery``). A mutable class with the same slots sets them
    with plain stores, and an object may change its class to one of the same
    layout, so the record built that way is a ``cls`` like any other. The
    layouts match only without a ``__weakref__`` slot (CPython compares the
    slots added after the base). ``cls`` must be a frozen, slotted attrs class
    without a weakref slot, validators, converters or ``__attrs_post_init__``,
    which this would skip; anything else is refused here, at import.
    """
    fields = attrs.fields(cast(Any, cls))
    if (
        "__weakref__" in getattr(cls, "__slots__", ("__weakref__",))
        or cls.__setattr__ is object.__setattr__
        or hasattr(cls, "__attrs_post_init__")
        or any(f.validator is not None or f.converter is not None for f in fields)
    ):
        raise TypeError(f"{cls.__name__} is not a frozen slotted record without extras")
    unfrozen = attrs.make_class(
        f"_Unfrozen{cls.__name__}",
        [f.name for f in fields],
        slots=True,
        weakref_slot=False,
        eq=False,
        repr=False,
    )
    become = object.__setattr__

    def build(*values: Any) -> R:
        record = unfrozen(*values)
        become(record, "__class__", cls)
        return cast(R, record)

    return build
