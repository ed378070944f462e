"""The async driver: one anyio implementation for trio and asyncio.

- ``service``: ``WebhookService``;
- ``clock``: ``AnyioClock``, epoch time that follows the event loop's clock;
- ``claim_queue``: the claims held ahead of the workers;
- ``publishing``: publishes grouped into one store transaction.
"""
