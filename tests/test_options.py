"""`--set` on list options: values append, and the first replaces the default."""

from fastproxy.options import Options


def test_set_mode_replaces_the_default_regular():
    options = Options()
    options.set("mode=socks5")
    assert options.mode == ["socks5"]


def test_set_list_appends_after_the_first():
    options = Options()
    options.set("mode=regular@8080", "mode=socks5@1080")
    assert options.mode == ["regular@8080", "socks5@1080"]
    options.set("ignore_hosts=a", "ignore_hosts=b")
    options.set("ignore_hosts=c")
    assert options.ignore_hosts == ["a", "b", "c"]
