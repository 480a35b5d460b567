"""An addon script for the mode tests: one JSON line per connection event to $CONNLOG."""

import json
import os


def _write(record):
    with open(os.environ["CONNLOG"], "a") as f:
        f.write(json.dumps(record) + "\n")


def clientconnect(layer):
    client = layer.client_conn
    _write({"event": "clientconnect", "mode": client.proxy_mode.full_spec,
            "type": client.proxy_mode.type_name, "peername": list(client.peername),
            "sockname": list(client.sockname)})


def serverconnect(server):
    _write({"event": "serverconnect", "address": list(server.address),
            "via": server.via.get_state() if server.via else None})


def response(flow):
    _write({"event": "response", "url": flow.request.url, "host": flow.request.host,
            "port": flow.request.port, "status": flow.response.status_code,
            "mode": flow.client_conn.proxy_mode.full_spec,
            "via": flow.server_conn.via.get_state() if flow.server_conn and
            flow.server_conn.via else None})


def read(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
