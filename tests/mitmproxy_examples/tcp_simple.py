"""
Modify raw TCP messages.

This example shows how to modify the TCP traffic. It replaces every occurrence
of "foo" with "bar".
"""
import logging

from fastproxy import tcp
from fastproxy.utils import strutils


def tcp_message(flow: tcp.TCPFlow):
    message = flow.messages[-1]
    message.content = message.content.replace(b"foo", b"bar")

    logging.info(
        f"tcp_message[from_client={message.from_client}), content={strutils.bytes_to_escaped_str(message.content)}]"
    )
