"""Low-level helpers every layer may use, one module per concern: ``files`` (hashing, atomic writes, JSON, the
cache folder), ``progress`` (bars and lines for long work), ``stats`` (a fixed-memory reservoir and percentiles),
``metrics`` (classification metrics and the unknown thresholds' calibration), ``timing`` (interleaved rounds),
``deps`` (optional packages with the extra that installs them), ``quiet`` (third-party start-up noise) and ``env``
(the machine and versions a result was measured with). Nothing here imports TensorFlow; the package sits below
every other one (pyproject.toml [tool.importlinter])."""
