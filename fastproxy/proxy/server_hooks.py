"""What mitmproxy's connection events receive (mitmproxy.proxy.server_hooks).

``server_connect(data)``, ``server_connected(data)``, ``server_disconnected(data)`` and
``server_connect_error(data)`` get a `ServerConnectionHookData`: the `Server` and the
`Client` on whose behalf it was opened. fastproxy shares upstream connections between the
clients of a worker, so ``client`` is the client whose request opened the connection
(known from the task serving it), or None outside any client's task.
"""

from __future__ import annotations

# Defined beside the event table (fastproxy.hooks), which adapts the events' arguments:
# the models and the table import nothing from fastproxy.proxy.
from fastproxy.hooks import ServerConnectionHookData, current_client

__all__ = ["ServerConnectionHookData", "current_client"]
