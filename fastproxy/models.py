"""The flow types where the spec (`spec/events.rst`) names them: ``models.HTTPFlow``,
``models.WebSocketFlow``, ``models.TCPFlow``, with their messages and connections."""

from fastproxy.connection import Client, Server
from fastproxy.flow import Error, Flow
from fastproxy.http import Headers, HTTPFlow, Request, Response
from fastproxy.tcp import TCPFlow, TCPMessage
from fastproxy.websocket import WebSocketData, WebSocketMessage
from fastproxy.wsflow import WebSocketFlow

__all__ = ["Client", "Server", "Error", "Flow", "Headers", "HTTPFlow", "Request", "Response",
           "TCPFlow", "TCPMessage", "WebSocketData", "WebSocketMessage", "WebSocketFlow"]
