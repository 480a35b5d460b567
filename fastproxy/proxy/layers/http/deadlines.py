"""Waiting for an upstream's response head, with a deadline (`read_timeout`, nginx's
`proxy_read_timeout`): a 504 when it passes. For the HTTP/2 layer and the bridge, whose
waits are futures; the HTTP/1 layer's are timed by the driver's housekeeping."""

from __future__ import annotations

import asyncio

from fastproxy._core import ProtocolError
from fastproxy.proxy.layers.http.h2conn import StreamReset
from fastproxy.proxy.streams import ConnectionGone


class ReadTimeout(Exception):
    """The upstream sent no response head within `read_timeout`: answered 504."""


async def response_head(awaitable, timeout: float):
    """What `awaitable` gives (an upstream's response head), or ReadTimeout after
    `timeout` seconds (option read_timeout; nginx's proxy_read_timeout)."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise ReadTimeout(f"no response from the upstream within {timeout:g} s "
                          "(read_timeout)") from None


async def head_while_uploading(task: asyncio.Task, head, timeout: float):
    """The response head (`head`, awaitable) while `task` sends the request body: an early
    answer is returned at once, the upload going on; read_timeout counts from the end of
    the upload. The upload's error if it failed and no head followed."""
    head = asyncio.ensure_future(head)
    try:
        await asyncio.wait((task, head), return_when=asyncio.FIRST_COMPLETED)
        if head.done():
            return head.result()  # early: the upload goes on
        if task.exception() is not None:
            # An origin that answers early and closes breaks the upload: its answer
            # may still be on the way. A moment for it, else the upload's error.
            try:
                return await response_head(head, min(timeout, 2.0))
            except (ReadTimeout, ConnectionGone, StreamReset, ProtocolError):
                raise task.exception() from None
    except BaseException:
        head.cancel()
        raise
    return await response_head(head, timeout)
