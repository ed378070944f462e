"""What the state machines share: their enums' base, the checks of their tables, and
a cheap way to build their frozen records.

Each machine keeps its whole rule set in one table,
``{(state, input type): frozenset of possible next states}``, and calls
``check_table`` at import, so a table that leaves a state unreachable or lets a
terminal state out fails the moment the module loads.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, cast

import attrs

S = TypeVar("S", bound=enum.Enum)
R = TypeVar("R")
P = ParamSpec("P")


class Symbol(enum.Enum):
    """An enum whose members hash by identity, in C.

    ``enum.Enum`` hashes a member by its name in Python code. States and
    outcomes key the transition tables and a driver's counters several times
    an attempt; members are singletons, so identity is their equality.

    Code on every delivery's path reads members through module names
    (``IN_FLIGHT = DeliveryState.IN_FLIGHT``), not off their class: on Python
    3.11 ``EnumType`` defines ``__getattr__``, which sends every attribute read
    on an enum class through CPython's slow lookup (0.3 us; 3.12 removed it).
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


def record_builder(cls: Callable[P, R]) -> Callable[P, R]:
    """A callable that builds what ``cls(...)`` builds, for 40 % of the cost, or ``cls``.

    For the frozen records made on every delivery's way (``Delivery``,
    ``Attempt``, ``Claimed``, ``HttpRequest``). A frozen attrs class sets each
    field through ``object.__setattr__``: 1.0 us for a ``Delivery``. What this
    returns is instead a mutable twin class, whose ``__init__`` sets the same
    slots with plain stores and then gives the instance ``cls`` as its class:
    0.37 us. CPython allows that between classes of one layout: both derive
    from ``object``, have the same slot names, and have neither a ``__dict__``
    nor a ``__weakref__`` slot.

    The twin's ``__init__`` only sets fields. So a class whose own
    ``__init__`` does more (validators, converters, ``init=False`` fields,
    the ``__attrs_pre_init__`` or ``__attrs_post_init__`` hook) is refused
    with ``TypeError``, at import, as is one whose layout does not allow the
    swap. Other interpreters, and free-threaded CPython (where assigning
    ``__class__`` pauses every thread), get ``cls`` itself.
    """
    gil_enabled = getattr(sys, "_is_gil_enabled", None)  # Python 3.13 and later
    if sys.implementation.name != "cpython" or (gil_enabled is not None and not gil_enabled()):
        return cls
    record: Any = cls
    fields = attrs.fields(record)
    if (
        record.__setattr__ is object.__setattr__
        or hasattr(record, "__attrs_pre_init__")
        or hasattr(record, "__attrs_post_init__")
        or any(f.validator or f.converter or not f.init for f in fields)
    ):
        raise TypeError(f"{record.__name__} does more than set its fields when built")

    def become_record(self: object) -> None:
        self.__class__ = record

    twin = attrs.make_class(
        record.__name__,
        {f.name: attrs.field(default=f.default, kw_only=f.kw_only, alias=f.alias) for f in fields},
        class_body={"__attrs_post_init__": become_record},
        slots=True,
        weakref_slot=False,
        eq=False,
        repr=False,
    )
    try:
        become_record(object.__new__(twin))
    except TypeError as exc:
        raise TypeError(f"{record.__name__} cannot be built through a twin: {exc}") from None
    return cast(Callable[P, R], twin)
