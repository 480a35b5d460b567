"""HTTP, all of it: one module of message semantics shared by every layer
(`semantics`), where a request goes (`routing`), HTTP/1 (`http1`, `upstream_mode`,
`connect` for CONNECT and the bytes after a 101),
HTTP/2 (`h2fields`, `h2conn`, `http2`) and the bridge from HTTP/1 clients to HTTP/2
upstreams (`http1_h2`). Modules import each other's public names only."""
