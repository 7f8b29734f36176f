"""The flower_photos dataset: locating or downloading it, checking it, and the frozen train/val/test split.

Imports only numpy and Pillow, so the device-side benchmark can load the frozen test set too.
"""

from edgeflower.data.source import ARCHIVE_SHA256, ARCHIVE_URL, download_dataset, list_images, resolve_data_dir
from edgeflower.data.split import (
    TEST_SUPPORTS,
    Manifest,
    load_manifest,
    make_split,
    packaged_manifest_path,
    split_items,
    verify_files,
)

__all__ = [
    "ARCHIVE_SHA256", "ARCHIVE_URL", "TEST_SUPPORTS", "Manifest", "download_dataset", "list_images",
    "load_manifest", "make_split", "packaged_manifest_path", "resolve_data_dir", "split_items", "verify_files",
]
