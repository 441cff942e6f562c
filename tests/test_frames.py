import av
import numpy as np
import pytest
from conftest import sha256
from PIL import Image

from helpers.data import registry
from helpers.data.frames import (
    DEFAULT_CLIP,
    decode_video,
    load_frames,
    scan_frames,
    split_by_time,
    time_key,
)
from helpers.data.store import ChecksumMismatch, DatasetUnavailable


def write_frames(folder, names, size=(24, 16)):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((size[1], size[0], 3), 10 * i, np.uint8)).save(folder / name)
    return folder


def write_video(path, frames=16, fps=8, size=(48, 32)):
    """A tiny H.264 clip whose frame k is a flat colour of red level 10 k."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for k in range(frames):
            image = np.zeros((size[1], size[0], 3), np.uint8)
            image[..., 0] = 10 * k
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_frames_come_in_time_order_not_name_order(tmp_path):
    folder = write_frames(tmp_path / "clip", ["f10.png", "f9.png", "f1.jpg"])
    (folder / "notes.txt").write_text("not a frame")
    clip = scan_frames(folder)
    assert [p.name for p in clip.paths] == ["f1.jpg", "f9.png", "f10.png"]
    assert sorted(["b2", "a10", "a2"], key=lambda s: time_key(tmp_path / s)) == ["a2", "a10", "b2"]
    assert clip.describe().startswith("3 frames from clip")


def test_unreadable_frames_are_skipped_and_reported(tmp_path):
    folder = write_frames(tmp_path / "clip", ["frame_1.png", "frame_2.png"])
    (folder / "frame_3.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    clip = scan_frames(folder)
    assert len(clip) == 2 and [name for name, _ in clip.skipped] == ["frame_3.jpg"]
    assert "1 unreadable skipped" in clip.describe()


def test_empty_or_missing_folders_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        scan_frames(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="1 unreadable"):
        scan_frames(broken)
    with pytest.raises(FileNotFoundError):
        scan_frames(tmp_path / "missing")


def test_crop_is_square_centred_and_handles_small_and_odd_images(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = 255  # a white centre band, exactly the centre square after scaling
    Image.fromarray(wide).save(folder / "frame_1.png")
    Image.new("RGBA", (6, 6), (255, 0, 0, 0)).save(folder / "frame_2.png")  # tiny and transparent
    clip = scan_frames(folder)
    crop = clip.crop(0, 10)
    assert crop.shape == (10, 10, 3) and crop.min() > 200
    tiny = clip.crop(1, 8)  # upscaled, and transparency composited on white
    assert tiny.shape == (8, 8, 3) and (tiny == 255).all()


def test_split_by_time_keeps_blocks_contiguous_and_neighbours_apart():
    split = split_by_time(120, blocks=6, test_blocks=2, gap=2, seed=3)
    assert not set(split.train) & set(split.test)
    assert len(split.train) + len(split.test) + len(split.dropped) == 120
    for t in split.test:  # no training frame within the gap of a test frame
        assert np.abs(split.train - t).min() > 2
    test_blocks = {int(t) * 6 // 120 for t in split.test}
    assert test_blocks == set(split.test_blocks) and len(test_blocks) == 2
    assert split_by_time(120, blocks=6, test_blocks=2, gap=2, seed=3).test_blocks == split.test_blocks


def test_split_by_time_rejects_impossible_requests():
    with pytest.raises(ValueError, match="test_blocks"):
        split_by_time(100, blocks=4, test_blocks=4, gap=1)
    with pytest.raises(ValueError, match="too few"):
        split_by_time(10, blocks=5, test_blocks=1, gap=1)
    with pytest.raises(ValueError, match="gap"):
        split_by_time(100, blocks=4, test_blocks=1, gap=-1)


def test_reader_clip_in_book_data_dir(isolated, monkeypatch):
    write_frames(isolated / "data" / "frames" / "my_cartoon", ["001.png", "002.png"])
    monkeypatch.setenv("BOOK_DATA_DIR", str(isolated / "data"))
    clip = load_frames("my_cartoon")
    assert len(clip) == 2 and clip.location.source == "BOOK_DATA_DIR"
    assert clip.describe().startswith("2 frames from $BOOK_DATA_DIR/frames")
    with pytest.raises(DatasetUnavailable, match="only \\['big_buck_bunny'\\] can be downloaded"):
        load_frames("another_cartoon")


def test_decode_video_samples_at_the_asked_rate(tmp_path):
    video = write_video(tmp_path / "clip.mp4", frames=16, fps=8)
    count = decode_video(video, tmp_path / "frames", fps=4, short_side=16)
    clip = scan_frames(tmp_path / "frames")
    assert count == len(clip) == 8
    first, second = (np.asarray(Image.open(p)) for p in clip.paths[:2])
    assert first.shape == (16, 24, 3) and second[..., 0].mean() - first[..., 0].mean() == pytest.approx(20, abs=4)
    with pytest.raises(ValueError, match="positive"):
        decode_video(video, tmp_path / "again", fps=0, short_side=16)
    assert not (tmp_path / "again").exists()


def test_full_clip_is_downloaded_checked_and_decoded_once(isolated, register_temp, monkeypatch, tmp_path):
    video = write_video(tmp_path / "origin.mp4", frames=8, fps=8)
    payload = video.read_bytes()
    spec = registry.DatasetSpec(
        name="frames", title="toy clip", homepage="https://example.org", licence="CC0",
        files=(registry.RemoteFile("big_buck_bunny.mp4", (video.as_uri(),), sha256=sha256(payload)),),
    )
    register_temp(spec)
    clip = load_frames(DEFAULT_CLIP, full=True, fps=8, short_side=16)
    assert len(clip) == 8 and clip.location.source == "cache" and clip.location.official
    assert "decoded at 8 fps" in clip.location.verified
    video.write_bytes(b"changed since")  # a second call decodes nothing and downloads nothing
    assert len(load_frames(DEFAULT_CLIP, full=True, fps=8, short_side=16)) == 8
    register_temp(registry.DatasetSpec(
        name="frames", title="toy clip", homepage="https://example.org", licence="CC0",
        files=(registry.RemoteFile("big_buck_bunny.mp4", (video.as_uri(),), sha256=sha256(b"other")),),
    ))
    with pytest.raises(ChecksumMismatch):
        load_frames(DEFAULT_CLIP, full=True, fps=4, short_side=16)


def test_registered_clip_has_a_checksum():
    remote = registry.spec("frames").file("big_buck_bunny.mp4")
    assert remote.sha256 and len(remote.sha256) == 64 and remote.urls[0].startswith("https://")


def test_real_offline_clip(shared_data):
    clip = load_frames()
    assert len(clip) == 238 and not clip.skipped
    assert [p.name for p in clip.paths[:2]] == ["frame_0001.jpg", "frame_0002.jpg"]
    assert clip.location.source == "BOOK_DATA_DIR" and "match" in clip.location.verified
    assert clip.crop(100, 64).shape == (64, 64, 3)
