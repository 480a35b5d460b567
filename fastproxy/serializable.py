"""Object state as plain data, for flow files and copies.

State is built only from str, bytes, int, float, bool, None, lists and dicts, so it can be
written as a tnetstring (mitmproxy's flow-file format). Tuples become lists; they are turned
back into tuples when state is loaded.

`SerializableDataclass` derives the state from a dataclass's fields and their type hints:
each field name is a key, and nested values are converted by what their type says
(a `Serializable` by its own get_state/from_state, an enum by its value, a sequence item by
item). A field with ``metadata={"serialize": False}`` is left out of the state. The
conversion plan is built once per class, on first use.
"""

from __future__ import annotations

import abc
import collections.abc
import dataclasses
import enum
import types
import typing
import uuid
from typing import Any, Callable, Self

State = Any
"""Plain data: str, bytes, int, float, bool, None, and lists and dicts of these."""

_Convert = Callable[[Any], Any]


class Serializable(abc.ABC):
    """An object whose state can be saved as plain data and restored later."""

    @classmethod
    @abc.abstractmethod
    def from_state(cls, state: State) -> Self:
        """Create a new object from the given state."""

    @abc.abstractmethod
    def get_state(self) -> State:
        """Return the object's state as plain data."""

    @abc.abstractmethod
    def set_state(self, state: State) -> None:
        """Replace the object's state with the given state."""

    def copy(self) -> Self:
        """A new object with the same state, but a fresh ``id`` if the state has one.

        Objects with an id (connections, flows) compare by it, so a copy that kept the id
        would be "equal" to its original.
        """
        state = self.get_state()
        if isinstance(state, dict) and "id" in state:
            state["id"] = str(uuid.uuid4())
        return self.from_state(state)


@dataclasses.dataclass(frozen=True, slots=True)
class _FieldPlan:
    name: str
    dump: _Convert
    load: _Convert


_plans: dict[type, tuple[_FieldPlan, ...]] = {}


class SerializableDataclass(Serializable):
    """Mixin for dataclasses: the state is a dict with one entry per serialized field."""

    @classmethod
    def _plan(cls) -> tuple[_FieldPlan, ...]:
        plan = _plans.get(cls)
        if plan is None:
            plan = _plans[cls] = _make_plan(cls)
        return plan

    def get_state(self) -> State:
        return {f.name: f.dump(getattr(self, f.name)) for f in self._plan()}

    @classmethod
    def from_state(cls, state: State) -> Self:
        return cls(**_load_fields(cls, state))

    def set_state(self, state: State) -> None:
        for name, value in _load_fields(type(self), state).items():
            setattr(self, name, value)


def _load_fields(cls: type[SerializableDataclass], state: State) -> dict[str, Any]:
    plan = cls._plan()
    expected = {f.name for f in plan}
    if not isinstance(state, dict) or state.keys() != expected:
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"invalid state for {cls.__name__}: expected keys {sorted(expected)}, got {got}"
        )
    return {f.name: f.load(state[f.name]) for f in plan}


def _make_plan(cls: type) -> tuple[_FieldPlan, ...]:
    hints = typing.get_type_hints(cls)
    return tuple(
        _FieldPlan(f.name, *_converters(hints[f.name], f"{cls.__name__}.{f.name}"))
        for f in dataclasses.fields(cls)
        if f.metadata.get("serialize", True)
    )


def _converters(tp: Any, where: str) -> tuple[_Convert, _Convert]:
    """Return (dump, load) functions for values of type `tp`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _optional(tp, where)
    if origin is typing.Literal:
        return _literal(typing.get_args(tp), where)
    if isinstance(tp, type) and hasattr(tp, "from_state"):
        return _nested(tp, where)
    if origin in (list, collections.abc.Sequence):
        return _sequence(typing.get_args(tp)[0], where)
    if origin is tuple:
        return _tuple(typing.get_args(tp), where)
    if tp in (str, bytes, bool, int, float):
        return _scalar(tp, where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return (lambda v: v.value), tp
    raise TypeError(f"{where}: cannot serialize values of type {tp!r}")


def _optional(tp: Any, where: str) -> tuple[_Convert, _Convert]:
    args = [a for a in typing.get_args(tp) if a is not types.NoneType]
    if len(args) != 1 or len(typing.get_args(tp)) != 2:
        raise TypeError(f"{where}: only `X | None` unions can be serialized, not {tp!r}")
    dump, load = _converters(args[0], where)
    return (lambda v: None if v is None else dump(v)), (lambda s: None if s is None else load(s))


def _literal(allowed: tuple[Any, ...], where: str) -> tuple[_Convert, _Convert]:
    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"{where}: {value!r} is not one of {allowed!r}")
        return value

    return check, check


def _nested(tp: Any, where: str) -> tuple[_Convert, _Convert]:
    def dump(value: Any) -> State:
        _require(value, where)
        return value.get_state()

    def load(state: State) -> Any:
        _require(state, where)
        return tp.from_state(state)

    return dump, load


def _sequence(item_tp: Any, where: str) -> tuple[_Convert, _Convert]:
    dump_item, load_item = _converters(item_tp, where)
    return (
        lambda v: [dump_item(x) for x in _require_seq(v, where)],
        lambda s: [load_item(x) for x in _require_seq(s, where)],
    )


def _tuple(item_tps: tuple[Any, ...], where: str) -> tuple[_Convert, _Convert]:
    if item_tps == (str, int):
        # Socket addresses: AF_INET6 sockets report (host, port, flowinfo, scope_id).
        item_tps = (str, int, int, int)
        lengths = (2, 4)
    else:
        lengths = (len(item_tps),)
    convs = [_converters(t, where) for t in item_tps]

    def convert(value: Any, index: int) -> Any:
        if len(_require_seq(value, where)) not in lengths:
            raise ValueError(f"{where}: expected {lengths[0]} items, got {value!r}")
        return [c[index](x) for c, x in zip(convs, value)]

    return (lambda v: convert(v, 0)), (lambda s: tuple(convert(s, 1)))


def _scalar(tp: type, where: str) -> tuple[_Convert, _Convert]:
    # bool is an int subclass; don't let True pass as a port number.
    accepted: tuple[type, ...] = (int, float) if tp is float else (tp,)

    def check(value: Any) -> Any:
        if not isinstance(value, accepted) or (tp is not bool and isinstance(value, bool)):
            raise ValueError(f"{where}: expected {tp.__name__}, got {value!r}")
        return tp(value) if tp is float else value

    return check, check


def _require(value: Any, where: str) -> Any:
    if value is None:
        raise ValueError(f"{where} must not be None")
    return value


def _require_seq(value: Any, where: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(_require(value, where), (list, tuple)):
        raise ValueError(f"{where}: expected a list, got {value!r}")
    return value
