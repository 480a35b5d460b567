"""Handle file paths as command arguments."""
import logging
from collections.abc import Sequence

from fastproxy import command
from fastproxy import flow
from fastproxy import http
from fastproxy import types
from fastproxy.log import ALERT


class MyAddon:
    @command.command("myaddon.histogram")
    def histogram(self, flows: Sequence[flow.Flow], path: types.Path) -> None:
        totals = {}
        for f in flows:
            if isinstance(f, http.HTTPFlow):
                totals[f.request.host] = totals.setdefault(f.request.host, 0) + 1
        with open(path, "w+") as fp:
            for cnt, dom in sorted((v, k) for (k, v) in totals.items()):
                fp.write(f"{cnt}: {dom}\n")
        logging.log(ALERT, "done")


addons = [MyAddon()]
