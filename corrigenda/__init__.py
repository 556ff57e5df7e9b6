"""Corrigenda: human corrections of AI predictions, turned into training data."""

__version__ = "0.1.0"
