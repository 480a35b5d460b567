"""Content views as mitmproxy 12's addons register them: a Contentview class (not an
instance) with prettify(data, metadata) and render_priority, metadata a `Metadata`."""

from fastproxy import contentviews


class Upper(contentviews.InteractiveContentview):
    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        return data.decode().upper()

    def reencode(self, prettified: str, metadata: contentviews.Metadata) -> bytes:
        return prettified.lower().encode()

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        return 2 if (metadata.content_type or "").startswith("text/upper") else 0


def test_a_view_class_registers_and_is_chosen_by_metadata():
    contentviews.add(Upper)
    try:
        view = contentviews.get("upper")
        assert isinstance(view, Upper)
        assert contentviews.best(b"abc", content_type="text/upper") is view
        assert contentviews.best(b"abc", content_type="text/plain") is not view
        assert contentviews.render(view, b"abc", content_type="text/upper") == "ABC"
        assert view.reencode("ABC", contentviews.Metadata()) == b"abc"
    finally:
        contentviews.remove_name("upper")
