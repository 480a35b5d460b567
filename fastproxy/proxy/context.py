"""What the layers of one client connection share, and the base class of layers.

`RootContext` is what `clientconnect(root_layer)` receives: `root_layer.client_conn` is the
`Client`. Layers reach the options, the addon manager, the upstream pool, the client's
endpoint and `next_layer` (what runs after them) through it.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from fastproxy.connection import Client, Server
from fastproxy.proxy.server_hooks import current_client

if TYPE_CHECKING:
    from fastproxy.addonmanager import AddonManager
    from fastproxy.mode_specs import ProxyMode
    from fastproxy.options import Options
    from fastproxy.proxy.streams import Endpoint
    from fastproxy.proxy.upstream import UpstreamPool


class RootContext:
    """One client connection: its `Client`, its endpoint and the proxy's shared parts."""

    __slots__ = ("client_conn", "server_conn", "client", "mode", "options", "addons",
                 "listeners", "pool", "next_layer", "layer", "awaiting_response")

    def __init__(self, client_conn: Client, client: Endpoint, mode: ProxyMode,
                 options: Options, addons: AddonManager, pool: UpstreamPool,
                 next_layer: ModuleType) -> None:
        self.client_conn = client_conn
        """The `Client` connection object."""
        self.server_conn: Server | None = None
        """The upstream connection the current flow uses, once there is one."""
        self.client = client
        self.mode = mode
        self.options = options
        self.addons = addons
        self.listeners = addons.listeners
        self.pool = pool
        self.next_layer = next_layer
        """`fastproxy.proxy.next_layer`: layers ask it what runs after them (they cannot
        import it: it imports every layer)."""
        self.layer: Layer | None = None
        self.awaiting_response: tuple | None = None
        """(upstream endpoint, since) while a response head is awaited: the driver's
        housekeeping aborts it after `read_timeout`."""
        current_client.set(client_conn)  # for ServerConnectionHookData.client

    def __repr__(self) -> str:
        return f"<RootContext {self.client_conn}>"


class Layer:
    """One protocol handled on a client connection; `run()` serves it until it ends.

    Layers are chosen one after another; each choice is announced with the
    `next_layer(layer)` event, and a layer an addon returns from it runs instead.
    """

    def __init__(self, ctx: RootContext) -> None:
        self.ctx = ctx

    async def run(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


async def run_layer(ctx: RootContext, layer: Layer) -> None:
    """Announce `layer` with `next_layer`, then run it (or the addon's replacement)."""
    if ctx.listeners.next_layer:
        replacement: Any = await ctx.addons.trigger_returning("next_layer", layer)
        if isinstance(replacement, Layer):
            layer = replacement
    ctx.layer = layer
    await layer.run()
