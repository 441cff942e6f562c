"""Folders of video frames: time order, splits by time, and frames decoded from the source clip.

A clip is a folder of images named so that their numbers give the time order (``frame_0001.jpg``,
``frame_0002.jpg``, ... ; ``f9.png`` comes before ``f10.png``). The dataset ``frames`` holds one
folder per clip; the book's clip is ``big_buck_bunny``. ``load_frames`` reads
``$BOOK_DATA_DIR/frames/<clip>/`` (any folder of cartoon frames a reader puts there
works), else the book-sized archive's copy of the book's clip, or (``full``) downloads
the registered video and decodes it once into the user cache with PyAV.
``split_by_time`` cuts the clip into contiguous blocks and drops
``gap`` frames on each side of every train/test border, so near-identical neighbouring frames
never end up on both sides.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from helpers.data.images import IMAGE_SUFFIXES, open_rgb
from helpers.data.registry import book_archive
from helpers.data.store import (
    DatasetUnavailable,
    Location,
    cache_dir,
    data_dir,
    fetch_book_copy,
    fetch_file,
    fetch_folder,
)

DATASET = "frames"
DEFAULT_CLIP = "big_buck_bunny"
CLIP_VIDEOS = {DEFAULT_CLIP: "big_buck_bunny.mp4"}  # registered source video of each downloadable clip


@dataclass(frozen=True)
class FrameClip:
    """The frames of one clip in time order, where they came from, and what could not be read."""

    paths: tuple[Path, ...]
    location: Location
    skipped: tuple[tuple[str, str], ...] = ()  # (file name, reason)

    def __len__(self) -> int:
        return len(self.paths)

    def crop(self, index: int, size: int) -> np.ndarray:
        """Frame ``index`` resized to ``size`` px on its short side and centre-cropped to ``size x size`` (uint8 RGB)."""
        image = open_rgb(self.paths[index])
        scale = size / min(image.size)
        width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
        image = image.resize((width, height), Image.Resampling.LANCZOS)
        left, top = (width - size) // 2, (height - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size)))

    def describe(self) -> str:
        """One line: how many frames, from where, and how many were skipped."""
        skipped = f", {len(self.skipped)} unreadable skipped" if self.skipped else ""
        return f"{len(self)} frames from {self.location.describe()}{skipped}"


def time_key(path: Path) -> tuple:
    """Sort key giving time order: the numbers in a file name compare as numbers ('f9' < 'f10')."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", path.stem)) + (
        (1, 0, path.suffix),)


def scan_frames(folder: Path, location: Location | None = None) -> FrameClip:
    """Every readable image directly in ``folder``, in time order; an empty folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"frame folder {folder} does not exist")
    candidates = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=time_key)
    kept, skipped = [], []
    for path in candidates:
        try:
            with Image.open(path) as image:
                image.load()
            kept.append(path)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            skipped.append((path.name, f"{type(err).__name__}: {err}"))
    if not kept:
        raise ValueError(
            f"frame folder {folder.name!r} holds no readable images ({len(skipped)} unreadable; "
            f"looked for {', '.join(sorted(IMAGE_SUFFIXES))}): put the frames of one clip directly in it"
        )
    location = location or Location(folder, "folder", False, "unverified: a folder given directly")
    return FrameClip(tuple(kept), location, tuple(skipped))


def decode_video(video: Path, folder: Path, fps: float, short_side: int) -> int:
    """Decode ``video`` at ``fps`` frames per second into ``folder/frame_NNNN.jpg`` (``short_side`` px); return the count.

    Written to a temporary folder first and renamed into place, so an interrupted run leaves nothing.
    """
    if fps <= 0 or short_side < 1:
        raise ValueError(f"fps and short_side must be positive, got {fps} and {short_side}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        count, next_time = 0, 0.0
        with av.open(str(video)) as container:
            for frame in container.decode(video=0):
                if frame.time is None or frame.time + 1e-6 < next_time:
                    continue
                image = frame.to_image()
                scale = short_side / min(image.size)
                image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
                count += 1
                image.save(tmp / f"frame_{count:04d}.jpg", quality=95)
                next_time += 1 / fps
        if not count:
            raise ValueError(f"{video.name} holds no decodable video frames")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return count


def load_frames(clip: str = DEFAULT_CLIP, *, full: bool = False, fps: float = 4.0, short_side: int = 256) -> FrameClip:
    """The frames of ``clip``: BOOK_DATA_DIR, the book-sized copy, or decoded video.

    ``full`` always decodes the registered video; so does a clip no local copy holds.
    The decoded frames are kept in the user cache, one folder per (clip, fps, short_side).
    """
    local = data_dir()
    if not full and local is not None and (local / DATASET / clip).is_dir():
        location = fetch_folder(DATASET)
        return scan_frames(location.path / clip, location)
    book = book_archive(DATASET)
    if not full and book is not None and book.holds(clip):
        location = fetch_book_copy(DATASET)
        return scan_frames(location.path / clip, location)
    if clip not in CLIP_VIDEOS:
        where = f"$BOOK_DATA_DIR/{DATASET}/{clip}/" + ("" if local is not None else " ($BOOK_DATA_DIR is not set)")
        raise DatasetUnavailable(
            f"frames of clip {clip!r} were not found in {where}, and only {sorted(CLIP_VIDEOS)} can be downloaded. "
            f"Put a folder of time-ordered frames at $BOOK_DATA_DIR/{DATASET}/{clip}/"
        )
    video = fetch_file(DATASET, CLIP_VIDEOS[clip])
    folder = cache_dir() / DATASET / f"{clip}-{fps:g}fps-{short_side}px"
    if not folder.is_dir():
        decode_video(video.path, folder, fps, short_side)
    decoded = Location(folder, "cache", True, f"decoded at {fps:g} fps from {CLIP_VIDEOS[clip]} ({video.verified})")
    return scan_frames(folder, decoded)


@dataclass(frozen=True)
class TimeSplit:
    """Frame indices of a split by time: contiguous test blocks, ``gap`` frames dropped on each side of a border."""

    train: np.ndarray
    test: np.ndarray
    dropped: np.ndarray
    test_blocks: tuple[int, ...]


def split_by_time(n_frames: int, *, blocks: int, test_blocks: int, gap: int, seed: int = 0) -> TimeSplit:
    """Cut ``n_frames`` into ``blocks`` contiguous blocks, make ``test_blocks`` of them (seeded) the test set."""
    if not 0 < test_blocks < blocks:
        raise ValueError(f"need 0 < test_blocks < blocks, got {test_blocks} of {blocks}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    if n_frames < blocks * (1 + 2 * gap):
        raise ValueError(f"{n_frames} frames are too few for {blocks} blocks with a gap of {gap}")
    block_of = np.arange(n_frames) * blocks // n_frames
    chosen = np.sort(np.random.default_rng(seed).choice(blocks, size=test_blocks, replace=False))
    is_test = np.isin(block_of, chosen)
    border = np.flatnonzero(is_test[1:] != is_test[:-1])  # frame i and i+1 fall on different sides
    near = np.zeros(n_frames, bool)
    for i in border:
        near[max(0, i - gap + 1): i + 1 + gap] = True  # gap frames on either side of the border
    frames = np.arange(n_frames)
    return TimeSplit(frames[~is_test & ~near], frames[is_test & ~near], frames[near], tuple(int(b) for b in chosen))
