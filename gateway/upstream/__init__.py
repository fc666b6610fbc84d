"""The upstream side: talking to the app behind the gateway.

* `client`: what the proxy needs from an HTTP client (`UpstreamClient`, a `Protocol`) and the errors a
  client reports;
* `http1`: `Http1UpstreamClient`, the HTTP/1.1 client of the hot path (httptools, a keep-alive pool);
* `websocket`: `AiohttpUpstreamClient`, aiohttp's client, used for WebSockets;
* `headers`: hop-by-hop filtering, shared with the Frontend API proxy;
* `proxy`: `UpstreamProxy`, raw ASGI in, the app's answer streamed back out.

Dependencies point one way: the edge imports this package; this package imports neither the edge nor
Litestar (the forwarding rules it applies live in the neutral `gateway.forwarded`). It renders no error
pages of its own: a failure before the answer started is handed back to the caller (`ProxyOutcome.failure`).
"""
