"""Exceptions raised by knnkit. Each is a subclass of the built-in a user would expect."""

from __future__ import annotations


class DimensionMismatchError(ValueError):
    """Two arrays disagree on the number of features."""


class CorruptIndexError(ValueError):
    """An index file is damaged, truncated, or not a knnkit index file."""


__all__ = ["CorruptIndexError", "DimensionMismatchError"]
