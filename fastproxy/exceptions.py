"""The exceptions addons raise or catch (mitmproxy's ``exceptions`` names)."""

from __future__ import annotations

from fastproxy.options import OptionsError


class FastproxyException(Exception):
    """Base class of fastproxy's own exceptions (mitmproxy's MitmproxyException)."""


MitmproxyException = FastproxyException


class FlowReadException(FastproxyException):
    """A flow file could not be read."""


class CommandError(FastproxyException):
    """A command does not exist or failed."""


class AddonManagerError(FastproxyException):
    """An addon could not be added."""


class AddonHalt(FastproxyException):
    """Raised by an addon to stop the hook chain for this event."""


class TypeError(FastproxyException):  # noqa: A001 - mitmproxy's name
    """A command argument has the wrong type."""


class ControlException(FastproxyException):
    pass


__all__ = ["AddonHalt", "AddonManagerError", "CommandError", "ControlException",
           "FastproxyException", "FlowReadException", "MitmproxyException", "OptionsError"]
