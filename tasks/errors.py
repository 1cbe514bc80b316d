"""The base of every expected failure: bad config, bad data, unreachable store.

These are reported by their message alone (no traceback); anything else is a bug and keeps its
traceback.
"""


class LatentfeedError(Exception):
    """An expected failure whose message says what is wrong and how to fix it."""
