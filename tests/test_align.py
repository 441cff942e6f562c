import cv2
import numpy as np
import pytest

from helpers.methods.align import AkazeAligner, align_all, summary


def textured_object(size=200, seed=0):
    """A textured blob (the 'object') on a flat background, and its mask."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size), 190, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, (size // 2, size // 2), (60, 30), 20, 0, 360, 1, thickness=cv2.FILLED)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (size, size)).astype(np.uint8), (5, 5), 0)
    image[mask > 0] = (texture[mask > 0] // 2 + 20)
    for _ in range(12):  # corners and blobs AKAZE can hold on to
        x, y = rng.integers(50, 150, 2)
        cv2.circle(image, (int(x), int(y)), int(rng.integers(2, 6)), int(rng.integers(0, 255)), -1)
    return image, mask.astype(bool)


def similarity(angle_deg, scale, shift, size=200):
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle_deg, scale)
    matrix[:, 2] += shift
    return matrix


def test_recovers_a_known_similarity_transform():
    reference, ref_mask = textured_object()
    moved_by = similarity(35, 1.1, (8, -5))
    moved = cv2.warpAffine(reference, moved_by, (200, 200), borderValue=190)
    moved_mask = cv2.warpAffine(ref_mask.astype(np.uint8), moved_by, (200, 200), flags=cv2.INTER_NEAREST) > 0
    aligner = AkazeAligner(reference, ref_mask)
    found = aligner.estimate(moved, moved_mask)
    assert found.aligned and found.inliers >= 8 and found.reason == ""
    expected = cv2.invertAffineTransform(moved_by)  # the transform that undoes the move
    assert found.rotation_deg == pytest.approx(35, abs=1.5)  # OpenCV turns positive angles anticlockwise
    assert found.scale == pytest.approx(1 / 1.1, rel=0.02)
    corners = np.array([[50.0, 50.0, 1], [150, 60, 1], [100, 150, 1]])
    assert np.abs(corners @ found.matrix.T - corners @ expected.T).max() < 2.0
    back = aligner.warp(moved, found)
    inside = cv2.erode(ref_mask.astype(np.uint8), np.ones((9, 9))) > 0
    assert np.abs(back[inside].astype(int) - reference[inside]).mean() < 12


def test_a_blank_image_falls_back_to_identity_and_says_why():
    reference, ref_mask = textured_object()
    aligner = AkazeAligner(reference, ref_mask)
    blank = np.full_like(reference, 190)
    result = aligner.estimate(blank)
    assert not result.aligned and "features" in result.reason
    assert np.array_equal(result.matrix, np.eye(2, 3)) and result.inlier_ratio == 0.0
    assert np.array_equal(aligner.warp(blank, result), blank)  # the identity leaves the image as it was
    warped, alignments = align_all(aligner, np.stack([reference, blank]), np.stack([ref_mask, ref_mask]))
    assert warped.shape == (2, 200, 200)
    stats = summary(alignments)
    assert stats["images"] == 2 and stats["aligned"] == 1 and stats["aligned_fraction"] == 0.5


def test_a_match_whose_mask_misses_the_reference_is_rejected():
    reference, ref_mask = textured_object()
    aligner = AkazeAligner(reference, ref_mask, min_overlap=0.5)
    assert aligner.estimate(reference).aligned  # no mask given: no overlap check
    assert aligner.estimate(reference, ref_mask).aligned
    everything = np.ones_like(ref_mask)  # a foreground mask far larger than the object
    rejected = aligner.estimate(reference, everything)
    assert not rejected.aligned and "IoU" in rejected.reason


def test_mixed_sizes_and_a_featureless_reference_are_errors():
    reference, ref_mask = textured_object()
    aligner = AkazeAligner(reference, ref_mask)
    with pytest.raises(ValueError, match="reference's size"):
        aligner.estimate(reference[:150])
    with pytest.raises(ValueError, match="feature mask"):
        aligner.estimate(reference, ref_mask[:10])
    with pytest.raises(ValueError, match="does not match"):
        aligner.warp(reference[:, :150], aligner.estimate(reference))
    with pytest.raises(ValueError, match="choose another reference"):
        AkazeAligner(np.full((64, 64), 7, np.uint8))
