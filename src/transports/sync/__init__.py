"""The threaded driver, for programs without an event loop: ``service.ThreadedWebhookService``.

Importing it loads neither anyio, trio nor asyncio.
"""
