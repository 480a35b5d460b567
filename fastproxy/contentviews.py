"""Content views: named functions that render a body for people (mitmproxy's
``contentviews``). fastproxy keeps the registry so that addons which add views load and
their views can be called (`get(name)`, `render`); its own console output does not pick
views yet.

Both of mitmproxy's styles register: a ``View`` (mitmproxy <= 11: ``__call__(data, **md)``
returning ``(description, lines)``) and a ``Contentview`` (mitmproxy 12: ``prettify(data,
metadata)`` returning text).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

TTextType = str | bytes
TViewLine = list[tuple[str, TTextType]]
TViewResult = tuple[str, Iterator[TViewLine]]


class View:
    """A content view (mitmproxy <= 11's base class)."""

    name: str = ""

    def __call__(self, data: bytes, **metadata: Any) -> TViewResult:
        raise NotImplementedError

    def render_priority(self, data: bytes, **metadata: Any) -> float:
        return 0

    def __lt__(self, other: Any) -> bool:
        return self.name.__lt__(other.name)


@dataclass
class Metadata:
    """What a view knows of the data it renders (mitmproxy 12's ``Metadata``)."""

    content_type: str | None = None
    flow: Any = None
    http_message: Any = None
    tcp_message: Any = None
    udp_message: Any = None
    websocket_message: Any = None
    dns_message: Any = None
    protobuf_definitions: Any = None
    original_data: bytes | None = None


class Contentview:
    """A content view (mitmproxy 12's base class): ``prettify(data, metadata) -> str``."""

    syntax_highlight = "none"

    @property
    def name(self) -> str:
        return type(self).__name__.lower().replace("contentview", "")

    def prettify(self, data: bytes, metadata: Any) -> str:
        raise NotImplementedError

    def render_priority(self, data: bytes, metadata: Any) -> float:
        return 0


class InteractiveContentview(Contentview):
    """A view whose text can be edited and turned back into bytes: ``reencode``."""

    def reencode(self, prettified: str, metadata: Metadata) -> bytes:
        raise NotImplementedError


views: list[Any] = []
"""Every registered view, in the order added."""


def add(view: Any) -> None:
    """Register `view` (a View or Contentview, or such a class, as mitmproxy 12's
    examples pass); a name already taken is replaced."""
    if isinstance(view, type):
        view = view()
    remove_name(view.name)
    views.append(view)


def remove(view: Any) -> None:
    if view in views:
        views.remove(view)


def remove_name(name: str) -> None:
    views[:] = [v for v in views if v.name != name]


def get(name: str) -> Any | None:
    """The registered view called `name`, or None."""
    return next((v for v in views if v.name == name or v.name.lower() == name.lower()), None)


def format_text(text: TTextType) -> Iterator[TViewLine]:
    """Lines of plain text in a view's line format."""
    for line in (text.splitlines() if text else [""]):
        yield [("text", line)]


def format_dict(d: dict) -> Iterator[TViewLine]:
    width = max((len(str(k)) for k in d), default=0)
    for key, value in d.items():
        yield [("header", f"{str(key) + ':':<{width + 1}} "), ("text", str(value))]


def render(view: Any, data: bytes, **metadata: Any) -> str:
    """`data` rendered by `view` as text, whichever style of view it is."""
    if isinstance(view, View) or (callable(view) and not hasattr(view, "prettify")):
        _, lines = view(data, **metadata)
        return "\n".join("".join(_text(t) for _, t in line) for line in lines)
    return view.prettify(data, Metadata(**metadata))


def best(data: bytes, **metadata: Any) -> Any | None:
    """The view with the highest render priority for `data`, if any above 0."""
    ranked = [(_priority(v, data, metadata), i, v) for i, v in enumerate(views)]
    ranked = [r for r in ranked if r[0] > 0]
    return max(ranked)[2] if ranked else None


def _priority(view: Any, data: bytes, metadata: dict) -> float:
    try:
        if isinstance(view, Contentview):
            return float(view.render_priority(data, Metadata(**metadata)))
        return float(view.render_priority(data, **metadata))
    except Exception:
        return 0.0


def _text(t: TTextType) -> str:
    return t.decode("utf-8", "replace") if isinstance(t, bytes) else t


__all__ = ["Contentview", "InteractiveContentview", "Metadata", "View", "TViewResult", "add", "best", "format_dict",
           "format_text", "get", "remove", "render", "views"]
