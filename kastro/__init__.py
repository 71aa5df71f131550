"""Kastro: security and network automation suite for municipalities."""

__version__ = "0.1.0"
