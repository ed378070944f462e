"""HTTP: the transports the drivers deliver through, and what they share.

- ``transport``: ``HttpResponse``, ``TransportError``, the transport protocols
  and the core's view of an exchange (``attempt_result``, ``timeout_result``);
- ``httpx_transport``: ``HttpxTransport`` and ``HttpxSyncTransport`` (httpcore);
- ``lean`` / ``lean_async``: the lean HTTP/1.1 transports (llhttp through httptools);
- ``wire``: HTTP/1.1 requests out and responses in, for the lean transports;
- ``guard``: the outbound address guard (``OutboundPolicy``, ``resolve_vetted``);
- ``httpcore_backends``: the guard and the thread deadline as httpcore backends;
- ``tls``: the one TLS-context builder.

Nothing is imported here: ``import transports.http.lean`` loads no event loop library.
"""
