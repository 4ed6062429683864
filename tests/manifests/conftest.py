"""Fixtures of the manifest tests: each overlay rendered once per session."""

from rendering import classic, dev, rendered

__all__ = ["classic", "dev", "rendered"]
