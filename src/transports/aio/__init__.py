"""The async driver: one anyio implementation for trio and asyncio.

- ``service``: ``WebhookService``;
- ``clock``: ``AnyioClock``, epoch time that follows the event loop's clock;
- ``queues``: the claims held ahead of the workers, and the results for the writer;
- ``publishing``: publishes grouped into one store transaction.
"""
