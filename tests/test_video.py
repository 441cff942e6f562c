import io

import av
import numpy as np
import pytest

from helpers.codecs.video import (
    VideoDecodeError,
    bd_rate,
    codec,
    decode_frames,
    encode_frames,
)
from helpers.methods.metrics import psnr


def moving_gradient(n=6, height=48, width=64, channels=1):
    """A smooth pattern that shifts by two pixels a frame (easy to code well, not static)."""
    base = (np.add.outer(np.arange(height), np.arange(width)) * 3 % 256).astype(np.uint8)
    frames = np.stack([np.roll(base, 2 * i, axis=1) for i in range(n)])
    return np.repeat(frames[..., None], 3, axis=-1) if channels == 3 else frames


def mean_psnr(a, b):
    return np.mean([psnr(x, y) for x, y in zip(a, b)])


@pytest.mark.parametrize("name", ["hevc", "av1"])
def test_gray_round_trip_keeps_count_size_and_quality(name):
    frames = moving_gradient()
    video = encode_frames(frames, name, crf=codec(name).crf_range[0] + 9, preset="ultrafast" if name == "hevc" else "10")
    decoded = decode_frames(video)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert mean_psnr(frames, decoded) > 40
    assert video.frames == 6 and video.channels == 1 and video.size_bytes == len(video.data)
    assert video.pix_fmt == ("gray" if name == "hevc" else "yuv420p")  # x265 codes 4:0:0; SVT-AV1 cannot


@pytest.mark.parametrize("channels", [1, 3])
def test_colour_small_and_odd_sizes_come_back_exactly_as_large(channels):
    frames = moving_gradient(n=3, height=33, width=47, channels=channels)  # odd, and under x265's 64 px
    for name in ("hevc", "av1"):
        decoded = decode_frames(encode_frames(frames, name, crf=20))
        assert decoded.shape == frames.shape
        assert mean_psnr(frames, decoded) > 30


def test_more_compression_means_a_smaller_file_and_settings_are_recorded():
    frames = moving_gradient(n=8)
    fine, coarse = (encode_frames(frames, "hevc", crf=c, preset="ultrafast") for c in (10, 51))
    assert coarse.size_bytes < fine.size_bytes
    assert fine.settings() == "libx265 crf=10 preset=ultrafast gray"
    assert codec("hevc").max_crf == 51 and codec("av1").max_crf == 63
    again = encode_frames(frames, "hevc", crf=10, preset="ultrafast")
    assert again.data == fine.data  # same frames and settings, same bytes


def test_truncated_or_foreign_files_are_clear_errors(tmp_path):
    video = encode_frames(moving_gradient(n=10), "hevc", crf=20, preset="ultrafast")
    path = video.save(tmp_path / "set.mkv")
    assert decode_frames(path).shape[0] == 10
    for cut in (len(video.data) - 40, len(video.data) // 2, 64):
        with pytest.raises(VideoDecodeError, match="truncated or corrupt"):
            decode_frames(video.data[:cut])
    foreign = io.BytesIO()  # a valid video without this book's frame-count tags
    with av.open(foreign, "w", format="matroska") as container:
        stream = container.add_stream("libx265", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "gray"
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64), np.uint8), format="gray")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoDecodeError, match="metadata"):
        decode_frames(foreign.getvalue())


def test_bad_inputs_are_rejected():
    frames = moving_gradient(n=2)
    with pytest.raises(ValueError, match="uint8"):
        encode_frames(frames.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        encode_frames(frames[0])
    with pytest.raises(ValueError, match="no frames"):
        encode_frames(frames[:0])
    with pytest.raises(ValueError, match="CRF 0..51"):
        encode_frames(frames, "hevc", crf=52)
    with pytest.raises(ValueError, match="unknown video codec"):
        encode_frames(frames, "h264")


def test_bd_rate_of_known_curves():
    rate, quality = np.array([100.0, 200, 400, 800]), np.array([30.0, 33, 36, 39])
    assert bd_rate(rate, quality, 0.8 * rate, quality) == pytest.approx(-20)
    assert bd_rate(rate, quality, 1.5 * rate, quality) == pytest.approx(50)
    assert np.isnan(bd_rate(rate, quality, rate, quality + 20))  # no common PSNR range
    with pytest.raises(ValueError, match="two"):
        bd_rate(rate[:1], quality[:1], rate, quality)
    with pytest.raises(ValueError, match="finite"):
        bd_rate(rate, np.array([30, 33, 36, np.inf]), rate, quality)
