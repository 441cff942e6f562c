"""Image sequences stored as one video (HEVC with libx265, AV1 with libsvtav1) through PyAV.

``encode_frames`` turns N equally sized 8-bit images into one Matroska video, one image per
frame, and records the codec settings (CRF, preset, pixel format). ``decode_frames`` gives back
exactly the frames that went in: the same count, size and channels, or a ``VideoDecodeError``
that says what is wrong (a truncated or corrupt file, a frame count that does not match).

Grayscale is handled explicitly: libx265 encodes 8-bit gray (4:0:0) natively; an encoder without
a gray format (libsvtav1) gets the image as the luma plane of 4:2:0 video with neutral chroma,
and the decoder returns the luma plane. Odd sizes (for 4:2:0) and frames smaller than the
encoder's minimum are padded, and cropped back on decoding.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from scipy.interpolate import PchipInterpolator

# SVT-AV1 prints its banner and configuration to stderr unless told otherwise (1 = errors only).
os.environ.setdefault("SVT_LOG", "1")

# Matroska stores tag names in upper case.
META_FRAMES, META_SIZE, META_CHANNELS = "BOOK_FRAMES", "BOOK_SIZE", "BOOK_CHANNELS"


class VideoDecodeError(RuntimeError):
    """A video file that does not decode to the frames it was made from."""


@dataclass(frozen=True)
class VideoCodec:
    """One lossy video codec as PyAV drives it."""

    name: str
    encoder: str
    decoder: str
    crf_range: tuple[int, int]  # (best quality, maximum compression) the encoder accepts
    default_preset: str
    min_side: int  # smaller frames are padded up to this (libx265 corrupts memory on frames under one CTU)

    @property
    def max_crf(self) -> int:
        """The CRF of maximum compression (the study's 'maximum compression' rows)."""
        return self.crf_range[1]

    def options(self, crf: int, preset: str) -> dict[str, str]:
        """Encoder options for one CRF and preset, with the encoder's own logging kept quiet."""
        if self.encoder == "libx265":
            return {"crf": str(crf), "preset": preset, "x265-params": "log-level=error"}
        return {"crf": str(crf), "preset": preset}


CODECS: dict[str, VideoCodec] = {
    "hevc": VideoCodec("hevc", "libx265", "hevc", (0, 51), "medium", 64),
    "av1": VideoCodec("av1", "libsvtav1", "libdav1d", (1, 63), "8", 16),
}


def codec(name: str) -> VideoCodec:
    """The codec called ``name`` ('hevc' or 'av1')."""
    if name not in CODECS:
        raise ValueError(f"unknown video codec {name!r}; available: {sorted(CODECS)}")
    return CODECS[name]


@dataclass(frozen=True)
class EncodedVideo:
    """A video in memory and the settings that made it."""

    data: bytes
    codec: str
    encoder: str
    crf: int
    preset: str
    pix_fmt: str
    frames: int
    height: int
    width: int
    channels: int  # 1 (grayscale) or 3 (RGB)

    @property
    def size_bytes(self) -> int:
        """The size of the video file (container included)."""
        return len(self.data)

    def settings(self) -> str:
        """The encoder settings in one line, e.g. ``libx265 crf=28 preset=medium gray``."""
        return f"{self.encoder} crf={self.crf} preset={self.preset} {self.pix_fmt}"

    def save(self, path: Path) -> Path:
        """Write the video file."""
        Path(path).write_bytes(self.data)
        return Path(path)


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 images, got dtype {frames.dtype}")
    if frames.ndim == 4 and frames.shape[-1] == 1:
        frames = frames[..., 0]
    if frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] != 3):
        raise ValueError(f"frames must be N x H x W (gray) or N x H x W x 3 (RGB), got shape {frames.shape}")
    if len(frames) == 0:
        raise ValueError("no frames to encode")
    return frames


def _pick_pix_fmt(encoder: str, channels: int) -> str:
    supported = {f.name for f in (av.codec.Codec(encoder, "w").video_formats or [])}
    if channels == 1 and "gray" in supported:
        return "gray"
    return "yuv420p"


def encode_frames(frames: np.ndarray, codec_name: str = "hevc", crf: int = 28, preset: str | None = None,
                  fps: int = 25) -> EncodedVideo:
    """Encode N images (uint8, N x H x W or N x H x W x 3) as one video, one image per frame."""
    frames = _check_frames(frames)
    spec = codec(codec_name)
    low, high = spec.crf_range
    if not low <= crf <= high:
        raise ValueError(f"{spec.encoder} accepts CRF {low}..{high}, not {crf}")
    preset = str(preset if preset is not None else spec.default_preset)
    channels = 1 if frames.ndim == 3 else 3
    height, width = frames.shape[1:3]
    pix_fmt = _pick_pix_fmt(spec.encoder, channels)
    # Pad (and crop again on decode) up to the encoder's minimum size, and to even sizes for 4:2:0.
    padded = [max(side, spec.min_side) for side in (height, width)]
    if pix_fmt == "yuv420p":
        padded = [side + side % 2 for side in padded]
    if padded != [height, width]:
        pad = [(0, 0), (0, padded[0] - height), (0, padded[1] - width)] + ([(0, 0)] if channels == 3 else [])
        frames = np.pad(frames, pad, mode="edge")
    buffer = io.BytesIO()
    # bitexact: no random segment ID or date in the file, so the same frames give the same bytes
    with av.open(buffer, "w", format="matroska", options={"fflags": "+bitexact"}) as container:
        container.metadata.update({META_FRAMES: str(len(frames)), META_SIZE: f"{height}x{width}",
                                   META_CHANNELS: str(channels)})
        stream = container.add_stream(spec.encoder, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.options = spec.options(crf, preset)
        for image in frames:
            frame = av.VideoFrame.from_ndarray(image, format="gray" if channels == 1 else "rgb24")
            if frame.format.name != pix_fmt:
                frame = frame.reformat(format=pix_fmt)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return EncodedVideo(buffer.getvalue(), spec.name, spec.encoder, crf, preset, pix_fmt, len(frames), height, width,
                        channels)


def _header(container: av.container.InputContainer) -> tuple[int, int, int, int]:
    meta = container.metadata
    try:
        frames = int(meta[META_FRAMES])
        height, width = (int(v) for v in meta[META_SIZE].split("x"))
        channels = int(meta[META_CHANNELS])
    except (KeyError, ValueError) as err:
        raise VideoDecodeError(
            f"the video lacks this book's frame-count metadata ({err}); it was not written by encode_frames"
        ) from None
    return frames, height, width, channels


def decode_frames(video: EncodedVideo | bytes | Path) -> np.ndarray:
    """The frames of a video from ``encode_frames``: exactly as many, as large, as went in."""
    if isinstance(video, EncodedVideo):
        data, name = video.data, f"{video.codec} video"
    elif isinstance(video, (str, Path)):
        data, name = Path(video).read_bytes(), Path(video).name
    else:
        data, name = bytes(video), "video"
    decoded = []
    try:
        with av.open(io.BytesIO(data), "r") as container:
            expected, height, width, channels = _header(container)
            for frame in container.decode(video=0):
                if channels == 1:
                    image = frame.to_ndarray(format="gray")
                else:
                    image = frame.to_ndarray(format="rgb24")
                decoded.append(image[:height, :width])
    except av.error.FFmpegError as err:
        raise VideoDecodeError(f"{name} could not be decoded ({err}); the file is truncated or corrupt") from err
    if len(decoded) != expected:
        raise VideoDecodeError(
            f"{name} decoded to {len(decoded)} frames, but {expected} were encoded: the file is truncated or corrupt"
        )
    frames = np.stack(decoded)
    if frames.shape[1:3] != (height, width):
        raise VideoDecodeError(f"{name} decoded to {frames.shape[1:3]} images, but {height}x{width} were encoded")
    return frames


def bd_rate(rate_anchor, psnr_anchor, rate_test, psnr_test) -> float:
    """Bjøntegaard delta rate (%): the test curve's average rate change at equal PSNR (negative = smaller).

    Log-rate is interpolated as a function of PSNR with monotone piecewise cubics (PCHIP) and
    averaged over the PSNR range both curves cover; NaN when the ranges do not overlap.
    """
    curves = []
    for rate, quality in ((rate_anchor, psnr_anchor), (rate_test, psnr_test)):
        rate, quality = np.asarray(rate, dtype=float), np.asarray(quality, dtype=float)
        if rate.shape != quality.shape or len(rate) < 2:
            raise ValueError("each curve needs at least two (rate, PSNR) points of equal count")
        if (rate <= 0).any() or not np.isfinite(quality).all():
            raise ValueError("rates must be positive and PSNR values finite")
        order = np.argsort(quality)
        quality, log_rate = quality[order], np.log(rate[order])
        keep = np.concatenate([[True], np.diff(quality) > 0])
        curves.append(PchipInterpolator(quality[keep], log_rate[keep]))
    low = max(c.x[0] for c in curves)
    high = min(c.x[-1] for c in curves)
    if high <= low:
        return float("nan")
    anchor, test = (c.integrate(low, high) / (high - low) for c in curves)
    return float((np.exp(test - anchor) - 1) * 100)
