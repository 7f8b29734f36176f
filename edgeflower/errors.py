"""Typed errors. The library raises these; the CLI turns them into one-line messages.

Every message says what was received, what is valid, and how to fix it.
"""

from __future__ import annotations


class EdgeflowerError(Exception):
    """Base class for every expected error (the CLI prints it without a traceback)."""


class MissingDependencyError(EdgeflowerError, ImportError):
    """An optional package that this step needs is not installed."""


class DataError(EdgeflowerError):
    """The dataset is missing, malformed, or does not match the frozen manifest."""


class DownloadError(DataError):
    """The dataset archive could not be downloaded or failed its checksum."""


class ImageError(EdgeflowerError):
    """One image file cannot be decoded."""


class ModelError(EdgeflowerError):
    """A model or artifact cannot be built, loaded or converted."""


class RunDirError(EdgeflowerError):
    """A run directory is missing, incomplete or would be overwritten."""


class ExportError(EdgeflowerError):
    """An export step failed; nothing already exported was replaced."""


class AccuracyDropError(ExportError):
    """An exported artifact lost more accuracy than allowed.

    Carries the figures, and the whole export report (already written to disk), so callers (and tests) can
    inspect them.
    """

    def __init__(self, failures: list[dict], report: dict | None = None):
        self.failures = failures
        self.report = report
        parts = []
        for f in failures:
            part = (f"{f['name']}: {f.get('reason') or 'over the budget'} (test split: {f['accuracy'] * 100:.2f}% vs "
                    f"float {f['reference_accuracy'] * 100:.2f}%)")
            tried = f.get("attempts") or []
            if len(tried) > 1:
                part += "; tried " + ", ".join(
                    f"{a['remedy']} ({a['val_drop_pts']:+.2f} pts on validation)" for a in tried)
            parts.append(part)
        super().__init__(
            "accuracy gate failed for " + "; ".join(parts)
            + ". The failed artifacts are kept as *.FAILED.*; try --auto, more --calibration images, or --max-drop."
        )


class BackendError(EdgeflowerError):
    """No interpreter backend can load the artifact."""


class SourceError(EdgeflowerError):
    """A frame source (camera, video, images) failed or is unavailable."""


class ServiceError(EdgeflowerError):
    """A systemd unit that cannot be written or removed, or classify options it would fail on."""


class BenchError(EdgeflowerError):
    """A benchmark input is invalid."""
