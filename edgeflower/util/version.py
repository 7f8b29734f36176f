"""The package version, in the lowest layer so that every layer can name it (the root package re-exports it)."""

__version__ = "0.1.0"
