import numpy as np
import pytest
import torch

from helpers.codecs import jpeg_bytes as jb


def digits(n=6, seed=0):
    """Blurry blobs on a black 28x28 background, a little like MNIST digits."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    out = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        cy, cx = rng.integers(9, 19, size=2)
        out[i] = (255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30)).astype(np.uint8)
    return out


def test_round_trip_decodes_to_the_same_pixels_within_jpeg_error():
    image = digits(1)[0]
    data = jb.encode_jpeg_bytes(image)
    decoded = jb.decode_jpeg_bytes(data)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - image).mean() < 4


def test_header_is_the_same_328_bytes_for_every_28x28_q75_file():
    files = jb.encode_all(digits(5))
    assert {jb.header_length(f) for f in files} == {328}
    assert len({f[:328] for f in files}) == 1
    assert all(f.endswith(jb.EOI) for f in files)
    assert jb.header_length(jb.encode_jpeg_bytes(digits(1)[0], quality=30)) == 328  # other tables, same sizes
    names = [name.split()[0] for name, _, _ in jb.header_segments(files[0])]
    assert names == ["SOI", "APP0", "DQT", "SOF0", "DHT", "DHT", "SOS"]
    assert sum(size for _, _, size in jb.header_segments(files[0])) == 328


def test_header_length_rejects_what_is_not_a_jpeg():
    with pytest.raises(ValueError, match="SOI"):
        jb.header_length(b"\x89PNG....")
    with pytest.raises(ValueError, match="start-of-scan"):
        jb.header_length(jb.encode_jpeg_bytes(digits(1)[0])[:100])


@pytest.mark.parametrize("image, error", [
    (np.zeros((28, 28, 3), np.uint8), ValueError),
    (np.zeros(28, np.uint8), ValueError),
    (np.zeros((28, 28), np.float32), TypeError),
])
def test_encoder_rejects_non_2d_or_non_uint8_images(image, error):
    with pytest.raises(error):
        jb.encode_jpeg_bytes(image)


def test_encoder_takes_the_same_quality_range_as_the_jpeg_codec():
    image = digits(1)[0]
    assert len(jb.encode_jpeg_bytes(image, quality=100)) > len(jb.encode_jpeg_bytes(image, quality=95))
    for bad in (0, 101, 50.0):
        with pytest.raises(ValueError, match="quality must be an integer from 1 to 100"):
            jb.encode_jpeg_bytes(image, quality=bad)


def test_encoder_rejects_non_stacks():
    with pytest.raises(ValueError, match="stack"):
        jb.encode_all(digits(1)[0])


def test_original_uint8_wraps_only_full_ink_to_zero():
    values = np.arange(256, dtype=np.uint8)
    wrapped = jb.original_uint8(values)
    assert wrapped[255] == 0 and np.array_equal(wrapped[:255], values[:255])
    # the original's float arithmetic gives the same for every value that does not overflow
    assert np.array_equal((values[:255] / 255 * 256).astype(np.uint8), values[:255])
    with pytest.raises(TypeError):
        jb.original_uint8(values.astype(np.float32))


def test_shift_moves_pixels_and_fills_with_zeros():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    moved = jb.shift_image(image, 1, -2)
    assert np.array_equal(moved[1:, :2], image[:3, 2:])
    assert moved[0].sum() == 0 and moved[:, 2:].sum() == 0
    assert not jb.shift_image(image, 4, 0).any()


def test_padding_policy_pads_right_and_truncates_or_refuses_long_files():
    files = [b"\x01\x02\x03", b"\x04\x05\x06\x07\x08"]
    padded = jb.pad_files(files, 4)
    assert padded.values.tolist() == [[1, 2, 3, 256], [4, 5, 6, 7]] and padded.values.dtype == torch.int16
    assert padded.lengths.tolist() == [3, 4] and padded.truncated == 1
    assert jb.pad_files(files, 6, pad_value=1).values[0].tolist() == [1, 2, 3, 1, 1, 1]
    assert jb.pad_files(files, 4, skip=2).values.tolist() == [[3, 256, 256, 256], [6, 7, 8, 256]]
    with pytest.raises(ValueError, match="longer than the pad width"):
        jb.pad_files(files, 4, on_long="error")
    with pytest.raises(ValueError, match="on_long"):
        jb.pad_files(files, 4, on_long="wrap")
    with pytest.raises(ValueError, match="pad value"):
        jb.pad_files(files, 4, pad_value=300)
    with pytest.raises(ValueError, match="pad_at"):
        jb.pad_files(files, 4, pad_at=-1)


def test_padding_can_go_before_the_file_or_after_its_header():
    files = [b"\x01\x02\x03", b"\x04\x05\x06\x07\x08"]
    before = jb.pad_files(files, 6, pad_at=0)
    assert before.values.tolist() == [[256, 256, 256, 1, 2, 3], [256, 4, 5, 6, 7, 8]]
    inside = jb.pad_files(files, 6, pad_at=2)
    assert inside.values.tolist() == [[1, 2, 256, 256, 256, 3], [4, 5, 256, 6, 7, 8]]
    assert inside.real().tolist()[0] == [True, True, False, False, False, True]
    assert jb.files_of(inside) == files and jb.files_of(before) == files
    cut = jb.pad_files(files, 4, pad_at=2)  # truncation keeps the first bytes, whatever the layout
    assert cut.values.tolist() == [[1, 2, 256, 3], [4, 5, 6, 7]]
    layout = jb.Layout(6, pad_value=1, pad_at=2)
    assert torch.equal(layout.pad(files).values, jb.pad_files(files, 6, 1, pad_at=2).values)


def test_encoded_files_pack_and_unpack():
    files = jb.encode_all(digits(3))
    packed = jb.EncodedFiles.from_files(files)
    assert len(packed) == 3 and [packed[i] for i in range(3)] == files
    assert packed.lengths.tolist() == [len(f) for f in files]
    assert jb.files_of(jb.pad_files(packed, 1000)) == files
    assert jb.files_of(jb.pad_files(packed, 1000).rows(slice(1, 3))) == files[1:]


@pytest.mark.parametrize("pad_at", [None, 8])
def test_zeroing_sets_exactly_count_file_bytes_seeded_and_outside_the_header(pad_at):
    files = [bytes([7]) * n for n in (50, 40, 30, 20)]
    padded = jb.pad_files(files, 50, pad_at=pad_at)
    a, b, c = (jb.zero_random_bytes(padded, 10, torch.Generator().manual_seed(s), start=5) for s in (1, 1, 2))
    assert torch.equal(a.values, b.values) and not torch.equal(a.values, c.values)
    assert (a.values == 0).sum(1).tolist() == [10, 10, 10, 10]
    assert (a.values[:, :5] == 7).all()
    assert (a.values[~padded.real()] == jb.PAD_TOKEN).all()  # padding untouched
    assert torch.equal(jb.zero_random_bytes(padded, 0, torch.Generator()).values, padded.values)


def test_zeroing_more_than_a_row_holds_is_an_error_unless_at_most():
    padded = jb.pad_files([bytes([7]) * 10], 12)
    with pytest.raises(ValueError, match="cannot zero"):
        jb.zero_random_bytes(padded, 8, torch.Generator(), start=5)
    capped = jb.zero_random_bytes(padded, 8, torch.Generator(), start=5, at_most=True)
    real = padded.real()
    assert bool((capped.values[:, 5:][real[:, 5:]] == 0).all())  # every eligible byte zeroed
    assert torch.equal(capped.values[:, :5], padded.values[:, :5])  # header kept
    assert torch.equal(capped.values[~real], padded.values[~real])  # padding kept
    with pytest.raises(ValueError, match=">= 0"):
        jb.zero_random_bytes(padded, -1, torch.Generator())


def test_glitched_files_are_still_bytes_and_some_do_not_decode():
    files = jb.encode_all(digits(6))
    padded = jb.pad_files(files, 800)
    header = jb.header_length(files[0])
    broken = jb.files_of(jb.zero_random_bytes(padded, 40, torch.Generator().manual_seed(0)))
    assert [len(f) for f in broken] == [len(f) for f in files] and broken != files
    assert jb.decode_jpeg_bytes(files[0][:header]) is None  # header only: nothing to decode
    assert jb.decode_jpeg_bytes(b"not a jpeg") is None


def test_byte_set_is_reproducible_and_augments():
    images, labels = digits(4), np.arange(4)
    layout = jb.Layout(700, pad_at=328)
    plain = jb.JpegByteSet(images, labels, layout)
    values, label = plain[2]
    assert values.shape == (700,) and label == 2
    assert bytes(values[values != jb.PAD_TOKEN].tolist()) == jb.encode_jpeg_bytes(images[2])
    shifted = [jb.JpegByteSet(images, labels, layout, max_shift=3, max_zeroed=20, zero_from=328, seed=5)
               for _ in range(2)]
    first, second = [torch.stack([s[i][0] for i in range(4)]) for s in shifted]
    assert torch.equal(first, second) and not torch.equal(first, torch.stack([plain[i][0] for i in range(4)]))
    assert torch.equal(first[:, :328], torch.stack([plain[i][0] for i in range(4)])[:, :328])
    with pytest.raises(ValueError, match="labels"):
        jb.JpegByteSet(images, labels[:3], layout)
