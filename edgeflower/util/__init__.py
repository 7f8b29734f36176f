"""Low-level helpers every layer may use, one module per concern: ``files`` (hashing, atomic writes, JSON, the
cache folder), ``progress`` (bars and lines for long work), ``stats`` (a fixed-memory reservoir and percentiles).
Standard library only; the package sits below every other one (pyproject.toml [tool.importlinter])."""
