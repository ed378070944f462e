"""What the async and the threaded driver share, independent of how they run.

- ``config``: ``DriverConfig``, the settings both services take and check;
- ``operations``: endpoint and delivery management and publishing over a ``Store``.
"""
