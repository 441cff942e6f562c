import numpy as np
import pytest
from PIL import Image

from helpers.codecs import jpeg
from helpers.methods.metrics import psnr


def textured(size=64, seed=0):
    """A smooth gradient with noise: JPEG has something to throw away at every quality."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(float)
    return Image.fromarray(np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8))


def test_lower_quality_gives_smaller_files_and_lower_psnr():
    image = textured()
    reference = np.asarray(image)
    sizes = [len(jpeg.encode(image, q)) for q in (90, 50, 10, 2)]
    scores = [psnr(reference, np.asarray(jpeg.compress(image, q))) for q in (90, 50, 10, 2)]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 4
    assert scores == sorted(scores, reverse=True)


def test_quality_is_honoured_exactly():
    image = textured()
    assert jpeg.encode(image, 37) == jpeg.encode(image, 37)
    assert jpeg.encode(image, 37) != jpeg.encode(image, 38)
    assert set(jpeg.quality_sweep(image)) == set(jpeg.TEST_QUALITIES)


def test_q_then_75_differs_from_q_alone():
    image = textured()
    once = np.asarray(jpeg.compress_then_resave(image, 10, resave=None))
    twice = np.asarray(jpeg.compress_then_resave(image, 10))
    assert np.array_equal(once, np.asarray(jpeg.compress(image, 10)))
    assert not np.array_equal(once, twice)
    assert np.array_equal(twice, np.asarray(jpeg.compress(jpeg.compress(image, 10), 75)))


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P"])
def test_other_modes_are_converted_to_rgb(mode):
    image = textured().convert(mode)
    out = jpeg.compress(image, 50)
    assert out.mode == "RGB" and out.size == image.size


@pytest.mark.parametrize("quality", [0, 101, 7.5, True, "80"])
def test_bad_quality_is_rejected(quality):
    with pytest.raises(ValueError, match="quality"):
        jpeg.encode(textured(), quality)


def test_quality_table_orders_and_bounds():
    table = jpeg.quality_table([textured(seed=s) for s in range(3)], qualities=(80, 22, 2))
    assert list(table.index) == [80, 22, 2]
    assert table["psnr_mean"].is_monotonic_decreasing and table["ssim_mean"].is_monotonic_decreasing
    assert table["bpp_mean"].is_monotonic_decreasing
    assert ((table["ssim_mean"] > 0) & (table["ssim_mean"] < 1)).all() and (table["psnr_std"] > 0).all()
    with pytest.raises(ValueError, match="at least one image"):
        jpeg.quality_table([])


def test_bits_per_pixel_matches_file_size():
    image = textured()
    assert jpeg.bits_per_pixel(image, 50) == pytest.approx(8 * len(jpeg.encode(image, 50)) / 64 ** 2)
