"""Datasets of the book: one registry, one resolution path, one loader per dataset format."""

from helpers.data.idx import IdxFormatError, parse_idx, read_idx
from helpers.data.images import (
    IMAGENETTE_CLASSES,
    ImageFolderSet,
    load_imagenette,
    open_rgb,
    scan_image_folder,
    to_rgb,
)
from helpers.data.mnist import ImageSplit, load_idx_split
from helpers.data.registry import (
    BOOK_ARCHIVES,
    REGISTRY,
    BookArchive,
    DatasetSpec,
    RemoteFile,
    book_archive,
    book_data_url,
    spec,
)
from helpers.data.store import (
    ChecksumMismatch,
    DatasetUnavailable,
    Location,
    cache_dir,
    data_dir,
    fetch_book_copy,
    fetch_file,
    fetch_folder,
)

__all__ = [
    "IMAGENETTE_CLASSES", "ImageFolderSet", "load_imagenette", "open_rgb", "scan_image_folder", "to_rgb",
    "BOOK_ARCHIVES", "BookArchive", "book_archive", "book_data_url", "fetch_book_copy",
    "REGISTRY", "ChecksumMismatch", "DatasetSpec", "DatasetUnavailable", "IdxFormatError", "ImageSplit",
    "Location", "RemoteFile", "cache_dir", "data_dir", "fetch_file", "fetch_folder", "load_idx_split",
    "parse_idx", "read_idx", "spec",
]
