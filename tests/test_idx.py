import gzip

import numpy as np
import pytest

from helpers.data import IdxFormatError, load_idx_split, parse_idx, read_idx


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_round_trip_of_every_rank_and_type():
    rng = np.random.default_rng(0)
    cases = [(rng.integers(0, 256, (3, 4, 5)).astype(np.uint8), 0x08),
             (rng.integers(-300, 300, (7,)).astype(np.int16), 0x0B),
             (rng.standard_normal((2, 3)).astype(np.float32), 0x0D)]
    for array, code in cases:
        decoded = parse_idx(idx_bytes(array, code))
        assert decoded.shape == array.shape and decoded.dtype == array.dtype
        np.testing.assert_array_equal(decoded, array)


def test_truncated_and_malformed_files(tmp_path):
    good = idx_bytes(np.zeros((4, 2, 2), np.uint8), 0x08)
    with pytest.raises(IdxFormatError, match="truncated"):
        parse_idx(good[:-3])
    with pytest.raises(IdxFormatError, match="trailing"):
        parse_idx(good + b"\0")
    with pytest.raises(IdxFormatError, match="magic"):
        parse_idx(b"\x01\x00" + good[2:])
    with pytest.raises(IdxFormatError, match="too short"):
        parse_idx(b"\0\0")
    broken = tmp_path / "t10k-images-idx3-ubyte.gz"
    broken.write_bytes(gzip.compress(good)[:-10])
    with pytest.raises(IdxFormatError, match="gzip"):
        read_idx(broken)


def test_real_mnist_test_split(shared_data):
    digits = load_idx_split("mnist", "test")
    assert digits.images.shape == (10000, 28, 28) and digits.images.dtype == np.uint8
    assert list(digits.class_counts().values()) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    image, label = digits[0]
    assert tuple(image.shape) == (28, 28) and label == 7


def test_real_fashion_mnist_both_splits(shared_data):
    train, test = load_idx_split("fashion-mnist", "train"), load_idx_split("fashion-mnist", "test")
    assert len(train) == 60000 and len(test) == 10000
    assert set(train.class_counts().values()) == {6000} and train.classes[9] == "Ankle boot"


def test_truncated_real_file_is_rejected(shared_data, tmp_path):
    raw = (shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    truncated = tmp_path / "t10k-labels-idx1-ubyte.gz"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(IdxFormatError):
        read_idx(truncated)


def test_bad_names_are_clear():
    with pytest.raises(ValueError, match="unknown IDX dataset"):
        load_idx_split("emnist", "test")
    with pytest.raises(ValueError, match="unknown split"):
        load_idx_split("mnist", "validation")
