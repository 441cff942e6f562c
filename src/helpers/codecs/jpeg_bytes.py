"""Images as JPEG files read byte by byte: encoding, the fixed header, padding, shifts and glitches.

A grayscale 28x28 digit saved by Pillow at quality 75 is a few hundred bytes: a header that is the
same for every such file (markers, quantisation and Huffman tables, frame and scan headers) and the
entropy-coded scan that holds the picture. The byte classifier of chapter 01 reads these bytes as a
sequence of integers 0..255, padded to a fixed length.

Padding policy (explicit, see ``pad_files``): files shorter than the pad width are filled up with
``pad_value``, either after the file (the original) or at a chosen position such as the end of the
header (so that the file's last byte is the last value); files longer are cut to their first
``width`` bytes (``on_long="truncate"``: the end of the scan is lost) or rejected (``on_long="error"``).

Restart markers (``restart=True``): JPEG can end the entropy-coded data after every block with a
byte-aligned marker ``FF D0``..``FF D7`` and reset the DC prediction there, so a decoder can resume
after damage. The pixels decode the same; the file is about 3 bytes per 8x8 block longer (a 28x28
image: 604 -> 652 bytes on average), and a reader can find where each block begins
(``helpers.models.block_reader``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from helpers.codecs.jpeg import check_quality

QUALITY = 75
PAD_TOKEN = 256  # a value no byte can take: the padding of the fixed variant
SOI, SOS, EOI = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"
RESTART_MARKERS = range(0xD0, 0xD8)  # second bytes of RST0..RST7 (after an 0xFF)


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` as a 2-D uint8 array, or a clear error (grayscale digits only)."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image (H, W), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels 0..255, got dtype {image.dtype}; convert with .astype(np.uint8)")
    return image


def encode_jpeg_bytes(image: np.ndarray, quality: int = QUALITY, restart: bool = False) -> bytes:
    """The bytes of ``image`` saved as a grayscale JPEG by Pillow at ``quality``.

    ``restart``: a restart marker after every 8x8 block (Pillow's ``restart_marker_blocks=1``).
    """
    buffer = io.BytesIO()
    Image.fromarray(check_image(image), mode="L").save(buffer, format="JPEG", quality=check_quality(quality),
                                                       restart_marker_blocks=1 if restart else 0)
    return buffer.getvalue()


def encode_all(images: np.ndarray, quality: int = QUALITY, restart: bool = False) -> list[bytes]:
    """Encode a stack (N, H, W) of uint8 images; one file per image.

    A plain loop: a 28x28 file takes tens of microseconds, mostly Python overhead inside Pillow,
    so threads gain nothing (the GIL) and worker processes cost more to start than they save.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"expected a stack of images (N, H, W), got shape {images.shape}")
    return [encode_jpeg_bytes(image, quality, restart) for image in images]


def original_uint8(images: np.ndarray) -> np.ndarray:
    """The pixels the original code fed to Pillow: ``(x / 255 * 256).astype(uint8)``, so 255 wraps to 0.

    For 0..254 the product floors back to the same value; only full-ink pixels (255 -> 256) overflow.
    Computed in integers, which gives exactly that result without an undefined float-to-uint8 cast.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got dtype {images.dtype}")
    return ((images.astype(np.int32) * 256 // 255) % 256).astype(np.uint8)


MARKERS = {0xD8: "SOI start of image", 0xE0: "APP0 JFIF", 0xDB: "DQT quantisation table", 0xC0: "SOF0 frame (size)",
           0xC4: "DHT Huffman table", 0xDA: "SOS start of scan", 0xDD: "DRI restart interval", 0xFE: "COM comment"}


def header_segments(data: bytes) -> list[tuple[str, int, int]]:
    """The header's segments as ``(name, offset, bytes)``, from SOI to the end of the SOS segment."""
    if data[:2] != SOI:
        raise ValueError("not a JPEG file: it does not start with the SOI marker FF D8")
    found, pos = [(MARKERS[0xD8], 0, 2)], 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"malformed JPEG header: expected a marker at byte {pos}, found 0x{data[pos]:02x}")
        code, size = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
        found.append((MARKERS.get(code, f"marker FF {code:02X}"), pos, 2 + size))
        pos += 2 + size
        if code == SOS[1]:
            return found
    raise ValueError("malformed JPEG header: no start-of-scan (FF DA) segment")


def header_length(data: bytes) -> int:
    """Length of the JPEG header: everything before the first entropy-coded byte (end of the SOS segment)."""
    _, offset, size = header_segments(data)[-1]
    return offset + size


def decode_jpeg_bytes(data: bytes) -> np.ndarray | None:
    """The grayscale pixels of a JPEG file, or None when Pillow cannot decode it (a broken file)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def shift_image(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``image`` moved ``dy`` rows down and ``dx`` columns right; uncovered pixels are 0."""
    image = check_image(image)
    h, w = image.shape
    out = np.zeros_like(image)
    if abs(dy) < h and abs(dx) < w:
        out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = image[max(-dy, 0):h - max(dy, 0),
                                                                         max(-dx, 0):w - max(dx, 0)]
    return out


@dataclass(frozen=True)
class EncodedFiles:
    """Variable-length files stored flat: file ``i`` is ``data[offsets[i]:offsets[i + 1]]``."""

    data: torch.Tensor  # uint8, all files one after another
    offsets: torch.Tensor  # int64, (N + 1,)

    @classmethod
    def from_files(cls, files: list[bytes]) -> "EncodedFiles":
        """Pack a list of files."""
        lengths = np.fromiter((len(f) for f in files), dtype=np.int64, count=len(files))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        data = np.frombuffer(b"".join(files), dtype=np.uint8).copy()
        return cls(torch.from_numpy(data), torch.from_numpy(offsets))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> bytes:
        return self.data[int(self.offsets[index]):int(self.offsets[index + 1])].numpy().tobytes()

    @property
    def lengths(self) -> torch.Tensor:
        """Bytes per file."""
        return self.offsets[1:] - self.offsets[:-1]

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only, for ``helpers.core.cache`` (loads with ``weights_only=True``)."""
        return {"data": self.data, "offsets": self.offsets}


@dataclass(frozen=True)
class PaddedBytes:
    """Files as one (N, width) int16 tensor of byte values and pad values, with their true lengths.

    Row ``i`` holds the first ``min(pad_at, lengths[i])`` bytes of file ``i``, then the padding, then
    the rest of the file; ``pad_at=None`` puts the padding after the whole file (right padding).
    """

    values: torch.Tensor  # int16: bytes 0..255 and PAD_TOKEN, at a quarter of int64's memory
    lengths: torch.Tensor  # bytes kept per file (after truncation)
    truncated: int  # files that were longer than the width
    pad_at: int | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    def rows(self, index: torch.Tensor | slice) -> "PaddedBytes":
        """The files selected by ``index`` (same layout)."""
        return replace(self, values=self.values[index], lengths=self.lengths[index])

    def real(self) -> torch.Tensor:
        """(N, width) mask of the positions that hold file bytes (not padding)."""
        return _file_positions(self.lengths, self.values.shape[1], self.pad_at)


def _split_points(lengths: torch.Tensor, pad_at: int | None) -> torch.Tensor:
    """(N, 1) column where each row's padding starts."""
    return lengths[:, None] if pad_at is None else lengths[:, None].clamp(max=pad_at)


def _file_positions(lengths: torch.Tensor, width: int, pad_at: int | None) -> torch.Tensor:
    column = torch.arange(width)[None, :]
    split = _split_points(lengths, pad_at)
    return (column < split) | (column >= split + width - lengths[:, None])


def pad_files(
    files: EncodedFiles | list[bytes],
    width: int,
    pad_value: int = PAD_TOKEN,
    *,
    pad_at: int | None = None,
    on_long: Literal["truncate", "error"] = "truncate",
    skip: int = 0,
) -> PaddedBytes:
    """Pad (or cut) every file to ``width`` values, optionally dropping its first ``skip`` bytes.

    The padding goes after the whole file (``pad_at=None``) or after its first ``pad_at`` bytes
    (``pad_at=0``: before the file), so that a reader's last step can be the file's last byte.
    ``skip`` strips a header of known length. Longer files are cut to their first ``width`` bytes
    when ``on_long="truncate"`` (the end of the scan and the end marker are lost) and raise
    ``ValueError`` when ``on_long="error"``.
    """
    if on_long not in ("truncate", "error"):
        raise ValueError(f"on_long must be 'truncate' or 'error', got {on_long!r}")
    if width < 1:
        raise ValueError(f"pad width must be positive, got {width}")
    if not 0 <= pad_value <= PAD_TOKEN:
        raise ValueError(f"pad value must be a byte value or PAD_TOKEN ({PAD_TOKEN}), got {pad_value}")
    if pad_at is not None and pad_at < 0:
        raise ValueError(f"pad_at must be >= 0 or None, got {pad_at}")
    if not isinstance(files, EncodedFiles):
        files = EncodedFiles.from_files(files)
    full = (files.lengths - skip).clamp(min=0)
    too_long = full > width
    if on_long == "error" and bool(too_long.any()):
        raise ValueError(
            f"{int(too_long.sum())} file(s) are longer than the pad width {width} (longest {int(full.max())} bytes); "
            "raise the width or pass on_long='truncate'")
    kept = full.clamp(max=width)
    column = torch.arange(width)[None, :]
    source = torch.where(column < _split_points(kept, pad_at), column, column - (width - kept[:, None]))
    index = (files.offsets[:-1, None] + skip + source).clamp(0, max(len(files.data) - 1, 0))
    real = _file_positions(kept, width, pad_at)
    values = torch.where(real, files.data[index].short(), torch.tensor(pad_value, dtype=torch.int16))
    return PaddedBytes(values, kept, int(too_long.sum()), pad_at)


def zero_random_bytes(padded: PaddedBytes, count: int, generator: torch.Generator, start: int = 0,
                      at_most: bool = False) -> PaddedBytes:
    """A copy of ``padded`` with exactly ``count`` distinct random file bytes per row set to 0.

    Positions are drawn uniformly among each row's file bytes from position ``start`` on (never in
    the padding); ``start`` equal to the header length leaves the header intact. A row with fewer
    than ``count`` eligible bytes is an error, unless ``at_most`` is set: then all its eligible bytes are zeroed.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    allowed = padded.real()
    allowed[:, :start] = False
    eligible = allowed.sum(1)
    if count > 0 and not at_most and bool((eligible < count).any()):
        raise ValueError(f"a row has only {int(eligible.min())} bytes after position {start}; cannot zero {count}")
    values = padded.values.clone()
    if count:
        keys = torch.rand(values.shape, generator=generator).masked_fill(~allowed, 2.0)
        chosen = keys.topk(min(count, values.shape[1]), dim=1, largest=False).indices
        eligible_chosen = keys.gather(1, chosen) < 2.0  # False only where a short row ran out (at_most)
        values.scatter_(1, chosen, torch.where(eligible_chosen, 0, values.gather(1, chosen)))
    return replace(padded, values=values)


def files_of(padded: PaddedBytes) -> list[bytes]:
    """The rows of a padded tensor back as files (the padding dropped)."""
    rows, real = padded.values.to(torch.uint8).numpy(), padded.real().numpy()
    return [row[mask].tobytes() for row, mask in zip(rows, real)]


@dataclass(frozen=True)
class Layout:
    """How files become fixed-width rows: the width, the pad value, where padding goes, header bytes dropped."""

    width: int
    pad_value: int = PAD_TOKEN
    pad_at: int | None = None
    skip: int = 0

    def pad(self, files: EncodedFiles | list[bytes], on_long: Literal["truncate", "error"] = "truncate") -> PaddedBytes:
        """``pad_files`` with this layout."""
        return pad_files(files, self.width, self.pad_value, pad_at=self.pad_at, on_long=on_long, skip=self.skip)


class JpegByteSet(Dataset):
    """Images encoded to JPEG on the fly, with random shifts and zeroed bytes as augmentation.

    Items are ``(values, label)``: an int16 row of ``layout.width`` byte/pad values and the label.
    Each item zeroes a uniform 0..``max_zeroed`` file bytes at positions ``>= zero_from``. Randomness
    comes from a seeded NumPy generator, so a single-process loader is reproducible.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        layout: Layout,
        *,
        quality: int = QUALITY,
        restart: bool = False,
        max_shift: int = 0,
        max_zeroed: int = 0,
        zero_from: int = 0,
        seed: int = 0,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.layout, self.quality = images, np.asarray(labels), layout, quality
        self.restart = restart
        self.max_shift, self.max_zeroed, self.zero_from = max_shift, max_zeroed, zero_from
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.max_shift:
            dy, dx = self.rng.integers(-self.max_shift, self.max_shift + 1, size=2)
            image = shift_image(image, int(dy), int(dx))
        padded = self.layout.pad([encode_jpeg_bytes(image, self.quality, self.restart)])
        if self.max_zeroed:
            count = min(int(self.rng.integers(0, self.max_zeroed + 1)), int(padded.lengths[0]) - self.zero_from)
            generator = torch.Generator().manual_seed(int(self.rng.integers(2**31)))
            padded = zero_random_bytes(padded, max(count, 0), generator, self.zero_from)
        return padded.values[0], int(self.labels[index])
