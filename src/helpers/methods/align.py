"""Align images to a reference image: AKAZE features, a RANSAC similarity transform, a warp.

``AkazeAligner(reference)`` detects AKAZE keypoints on the reference once (optionally only inside
a foreground mask, as the study did with a temporary background removal), and for each image
estimates the rotation + uniform scale + translation that maps it onto the reference
(``cv2.estimateAffinePartial2D`` with RANSAC). When matching fails (too few features, too few
inliers, an implausible scale, or, when foreground masks are given, a warped mask that hardly
overlaps the reference's) the result is the identity transform, flagged with
``aligned=False`` and the reason, never a silent failure.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from helpers.methods.mask import to_gray

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class Alignment:
    """The transform that maps one image onto the reference, and how well it was supported."""

    matrix: np.ndarray  # 2 x 3 affine matrix (image coordinates -> reference coordinates)
    matches: int  # descriptor matches that passed the ratio test
    inliers: int  # matches consistent with the RANSAC transform
    aligned: bool  # False: matching failed and ``matrix`` is the identity fallback
    reason: str = ""  # why matching failed (empty when aligned)

    @property
    def inlier_ratio(self) -> float:
        """Inliers over ratio-test matches (0 when there were none)."""
        return self.inliers / self.matches if self.matches else 0.0

    @property
    def rotation_deg(self) -> float:
        """The rotation part of the transform, in degrees."""
        return float(np.degrees(np.arctan2(self.matrix[1, 0], self.matrix[0, 0])))

    @property
    def scale(self) -> float:
        """The uniform scale part of the transform."""
        return float(np.hypot(self.matrix[0, 0], self.matrix[1, 0]))


def _fallback(matches: int, inliers: int, reason: str) -> Alignment:
    return Alignment(IDENTITY.copy(), matches, inliers, False, reason)


def _mask_u8(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape:
        raise ValueError(f"the feature mask is {mask.shape} but the image is {shape}")
    return mask.astype(np.uint8) * 255


class AkazeAligner:
    """Estimate and apply the similarity transform from each image to one reference image."""

    def __init__(self, reference: np.ndarray, reference_mask: np.ndarray | None = None, *, ratio: float = 1.0,
                 ransac_threshold: float | None = None, min_inliers: int = 8,
                 scale_range: tuple[float, float] = (0.67, 1.5), min_overlap: float = 0.5,
                 detector_threshold: float = 0.0001) -> None:
        """``ratio`` < 1 applies Lowe's ratio test (1 keeps every nearest match: a screw's repeated thread makes
        the second-best match close, and RANSAC rejects the outliers); ``ransac_threshold`` is in pixels,
        by default 1.6 % of the image's longer side."""
        self.reference = to_gray(reference)
        self.shape = self.reference.shape
        self.ratio = ratio
        self.ransac_threshold = ransac_threshold if ransac_threshold is not None else 0.016 * max(self.shape)
        self.min_inliers, self.scale_range, self.min_overlap = min_inliers, scale_range, min_overlap
        self.reference_mask = None if reference_mask is None else np.asarray(reference_mask, dtype=bool)
        self.detector = cv2.AKAZE_create(threshold=detector_threshold)
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        self.ref_points, self.ref_descriptors = self._features(self.reference, reference_mask)
        if self.ref_descriptors is None or len(self.ref_points) < min_inliers:
            raise ValueError(
                f"the reference image has {len(self.ref_points)} AKAZE features, fewer than {min_inliers}: "
                "choose another reference (one with a visible, textured object)"
            )

    def _features(self, gray: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        keypoints, descriptors = self.detector.detectAndCompute(gray, _mask_u8(mask, gray.shape))
        return np.float32([k.pt for k in keypoints]).reshape(-1, 2), descriptors

    def _check(self, image: np.ndarray) -> np.ndarray:
        gray = to_gray(image)
        if gray.shape != self.shape:
            raise ValueError(
                f"image of size {gray.shape[1]}x{gray.shape[0]} cannot be aligned to a {self.shape[1]}x{self.shape[0]} "
                "reference: every image of a set must have the reference's size"
            )
        return gray

    def estimate(self, image: np.ndarray, mask: np.ndarray | None = None) -> Alignment:
        """The transform from ``image`` to the reference (features only inside ``mask`` if given)."""
        gray = self._check(image)
        points, descriptors = self._features(gray, mask)
        if descriptors is None or len(points) < 2:
            return _fallback(0, 0, f"only {len(points)} AKAZE features in the image (blank or featureless?)")
        pairs = self.matcher.knnMatch(descriptors, self.ref_descriptors, k=2)
        good = [p[0] for p in pairs if p and (len(p) == 1 or p[0].distance <= self.ratio * p[1].distance)]
        if len(good) < self.min_inliers:
            return _fallback(len(good), 0, f"{len(good)} matches passed the ratio test, fewer than {self.min_inliers}")
        source = points[[m.queryIdx for m in good]]
        target = self.ref_points[[m.trainIdx for m in good]]
        matrix, inlier_flags = cv2.estimateAffinePartial2D(
            source, target, method=cv2.RANSAC, ransacReprojThreshold=self.ransac_threshold, maxIters=5000,
            confidence=0.999,
        )
        inliers = int(inlier_flags.sum()) if inlier_flags is not None else 0
        if matrix is None or inliers < self.min_inliers:
            return _fallback(len(good), inliers, f"RANSAC kept {inliers} inliers, fewer than {self.min_inliers}")
        result = Alignment(matrix, len(good), inliers, True)
        low, high = self.scale_range
        if not low <= result.scale <= high:
            return _fallback(len(good), inliers, f"implausible scale {result.scale:.2f} (allowed {low}..{high})")
        if mask is not None and self.reference_mask is not None:
            moved = self.warp(np.asarray(mask, dtype=np.uint8), result, nearest=True, fill=0).astype(bool)
            overlap = (moved & self.reference_mask).sum() / max((moved | self.reference_mask).sum(), 1)
            if overlap < self.min_overlap:
                return _fallback(len(good), inliers, f"warped foreground overlaps the reference's by IoU {overlap:.2f} "
                                 f"< {self.min_overlap}")
        return result

    def warp(self, image: np.ndarray, alignment: Alignment, *, nearest: bool = False,
             fill: float | None = None) -> np.ndarray:
        """``image`` moved onto the reference frame; uncovered corners get ``fill`` (default: the median)."""
        image = np.asarray(image)
        if image.shape[:2] != self.shape:
            raise ValueError(f"image of shape {image.shape} does not match the reference's {self.shape}")
        if fill is None:
            fill = float(np.median(image))
        interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        return cv2.warpAffine(image, alignment.matrix, (self.shape[1], self.shape[0]), flags=interpolation,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def align_all(aligner: AkazeAligner, images: np.ndarray,
              masks: np.ndarray | None = None) -> tuple[np.ndarray, list[Alignment]]:
    """Every image estimated and warped onto the aligner's reference; failures keep the identity."""
    alignments = [aligner.estimate(image, None if masks is None else masks[i]) for i, image in enumerate(images)]
    warped = np.stack([aligner.warp(image, a) for image, a in zip(images, alignments)])
    return warped, alignments


def summary(alignments: list[Alignment]) -> dict[str, float]:
    """Counts and medians for a set of alignments (for tables and provenance)."""
    ok = [a for a in alignments if a.aligned]
    return {
        "images": len(alignments),
        "aligned": len(ok),
        "aligned_fraction": len(ok) / len(alignments) if alignments else 0.0,
        "median_inliers": float(np.median([a.inliers for a in ok])) if ok else 0.0,
        "median_inlier_ratio": float(np.median([a.inlier_ratio for a in ok])) if ok else 0.0,
    }
