"""Handle flows as command arguments."""
import logging
from collections.abc import Sequence

from fastproxy import command
from fastproxy import flow
from fastproxy import http
from fastproxy.log import ALERT


class MyAddon:
    @command.command("myaddon.addheader")
    def addheader(self, flows: Sequence[flow.Flow]) -> None:
        for f in flows:
            if isinstance(f, http.HTTPFlow):
                f.request.headers["myheader"] = "value"
        logging.log(ALERT, "done")


addons = [MyAddon()]
