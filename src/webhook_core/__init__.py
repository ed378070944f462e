"""Sans-IO webhook delivery core: events, signing, and the delivery and endpoint state machines.

Nothing here performs I/O, reads a clock or draws randomness: time is always
an argument (``now``, epoch seconds) and ids and tokens are supplied by the caller.
"""
