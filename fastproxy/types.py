"""Argument types of commands (mitmproxy's ``types``): markers for their parameters."""

from __future__ import annotations


class Path(str):
    """A file system path."""


class Cmd(str):
    """A command name."""


class CmdArgs(str):
    """Arguments of a command."""


class Marker(str):
    """A flow marker (one character or an emoji name)."""


class Choice:
    """One of the values a command named `options_command` returns."""

    def __init__(self, options_command: str) -> None:
        self.options_command = options_command


class Data(list):
    """Rows of data."""


__all__ = ["Choice", "Cmd", "CmdArgs", "Data", "Marker", "Path"]
