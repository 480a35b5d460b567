"""``replay.client``: send flows' requests again, as mitmproxy's client replay does.

Each flow is marked ``is_replay = "request"``, goes through the `request` hooks, is sent
to its server over HTTP/1.1 (from a worker thread: the loop never blocks), and its
response goes through the `response` hooks. Not recorded by -w unless an addon does it.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from fastproxy.http import Response
from fastproxy.log import logger
from fastproxy.net.replay import NOT_REPLAYED, send_request

_tasks: set = set()


def register(manager: Any) -> None:
    """Add the ``replay.client`` command to `manager`'s commands."""
    def replay_client(flows: Any) -> None:
        loop = asyncio.get_running_loop()
        for flow in flows:
            task = loop.create_task(replay(manager, flow))
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)
    manager.commands.add("replay.client", replay_client)


async def replay(manager: Any, flow: Any) -> None:
    flow.is_replay = "request"
    flow.response = None
    flow.error = None
    await manager.trigger("request", flow)
    if flow.response is None:
        insecure = bool(getattr(manager.options, "ssl_insecure", False))
        try:
            flow.response = await asyncio.get_running_loop().run_in_executor(
                None, send, flow.request, insecure)
        except Exception as e:  # an unreachable server is the flow's error, as in a proxy
            from fastproxy.flow import Error
            flow.error = Error(f"replay failed: {e}")
            logger.info("replay of %s failed: %s", flow.request.pretty_url, e)
            await manager.trigger("error", flow)
            return
    await manager.trigger("response", flow)


def send(request: Any, insecure: bool, timeout: float = 30.0) -> Response:
    """`request` over HTTP/1.1 to its host; the whole response."""
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    status, reason, fields, content = send_request(request, context, timeout)
    response = Response.make(status, content,
                             [(k, v) for k, v in fields if k.lower() not in NOT_REPLAYED])
    response.reason = reason
    return response
