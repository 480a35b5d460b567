"""An addon script for the TLS and HTTP/2 tests: one JSON line per event to $FLOWLOG."""

import json
import os


def _conn(conn):
    if conn is None:
        return None
    return {
        "tls": conn.tls, "tls_established": conn.tls_established, "sni": conn.sni,
        "alpn": conn.alpn.decode() if conn.alpn else None,
        "alpn_offers": [a.decode() for a in conn.alpn_offers],
        "cipher": conn.cipher, "cipher_list": len(conn.cipher_list),
        "tls_version": conn.tls_version,
        "certificate_list": [[c.cn, c.altnames, dict(c.issuer).get("CN")]
                             for c in conn.certificate_list],
        "mitmcert": ([getattr(conn, "mitmcert").cn, getattr(conn, "mitmcert").altnames]
                     if getattr(conn, "mitmcert", None) else None),
        "timestamp_tls_setup": conn.timestamp_tls_setup,
    }


def _write(event, flow):
    record = {"event": event, "url": flow.request.url, "method": flow.request.method,
              "http_version": flow.request.http_version,
              "request_size": len(flow.request.raw_content or b""),
              "status": flow.response.status_code if flow.response else None,
              "response_version": flow.response.http_version if flow.response else None,
              "response_size": len(flow.response.raw_content or b"") if flow.response else None,
              "error": flow.error.msg if flow.error else None,
              "client": _conn(flow.client_conn), "server": _conn(flow.server_conn)}
    with open(os.environ["FLOWLOG"], "a") as f:
        f.write(json.dumps(record) + "\n")


def requestheaders(flow):
    _write("requestheaders", flow)


def request(flow):
    _write("request", flow)


def responseheaders(flow):
    _write("responseheaders", flow)


def response(flow):
    _write("response", flow)


def error(flow):
    _write("error", flow)


def read(path):
    """The records written so far."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
