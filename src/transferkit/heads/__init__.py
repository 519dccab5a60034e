"""Heads that turn pooled features into predictions."""

from transferkit.heads.linear import LinearHead

__all__ = ["LinearHead"]
