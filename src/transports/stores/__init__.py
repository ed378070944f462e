"""Storage: the ``Store`` interface and its memory, SQLite and PostgreSQL implementations.

- ``interface``: ``Store``, ``Claimed``, ``DeliveryFilter`` and the other types
  every store shares;
- ``memory``, ``sqlite``, ``postgres`` (the ``postgres`` extra: imported only
  when used);
- ``records``: records to and from JSON documents (cattrs), for SQL stores;
- ``url``: ``open_store`` from a database URL.
"""
