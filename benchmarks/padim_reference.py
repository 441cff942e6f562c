"""The reference PaDiM of xiahaifeng1995/PaDiM-Anomaly-Detection-Localization-master.

Copied from that repository's ``main.py`` at commit 616004b9b7fa6a507d196dd3eeeba9e0a93f160f
(Apache License 2.0, copyright its authors) and cut into functions. Only the loading is
adapted: the images arrive as prepared tensors instead of through its ``MVTecDataset``,
the stage outputs come from the book's ``FeaturePyramid`` instead of forward hooks on a
torchvision ResNet, the channel index is given instead of drawn with ``random.sample``, and
nothing is pickled or plotted. The computations (``embedding_concat``, a ``np.cov`` per
position, ``np.linalg.inv`` and ``scipy.spatial.distance.mahalanobis`` per position and
image, bilinear upsampling, ``gaussian_filter`` per map) are the repository's lines.
Its final min-max normalisation of all maps is left out: it changes no ROC-AUC, and the
raw maps can be compared with the other implementations'.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from scipy.spatial.distance import mahalanobis

LAYERS = ("layer1", "layer2", "layer3")


def embedding_concat(x, y):
    B, C1, H1, W1 = x.size()
    _, C2, H2, W2 = y.size()
    s = int(H1 / H2)
    x = F.unfold(x, kernel_size=s, dilation=1, stride=s)
    x = x.view(B, C1, -1, H2, W2)
    z = torch.zeros(B, C1 + C2, x.size(2), H2, W2)
    for i in range(x.size(2)):
        z[:, :, i, :, :] = torch.cat((x[:, :, i, :, :], y), 1)
    z = z.view(B, -1, H2 * W2)
    z = F.fold(z, kernel_size=s, output_size=(H1, W1), stride=s)

    return z


def embeddings(model: Callable, batches: Iterable[torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
    """Stage outputs of every batch, joined with ``embedding_concat``, channels ``idx`` kept."""
    outputs = OrderedDict((name, []) for name in LAYERS)
    for x in batches:
        with torch.no_grad():
            stages = model(x)
        for k, v in zip(outputs.keys(), stages):
            outputs[k].append(v.cpu().detach())
    for k, v in outputs.items():
        outputs[k] = torch.cat(v, 0)
    embedding_vectors = outputs["layer1"]
    for layer_name in LAYERS[1:]:
        embedding_vectors = embedding_concat(embedding_vectors, outputs[layer_name])
    return torch.index_select(embedding_vectors, 1, idx)


def fit(embedding_vectors: torch.Tensor) -> list[np.ndarray]:
    """Per-position mean (C x P) and covariance (C x C x P), as ``main.py`` stores them."""
    B, C, H, W = embedding_vectors.size()
    embedding_vectors = embedding_vectors.view(B, C, H * W)
    mean = torch.mean(embedding_vectors, dim=0).numpy()
    cov = torch.zeros(C, C, H * W).numpy()
    I = np.identity(C)
    for i in range(H * W):
        cov[:, :, i] = np.cov(embedding_vectors[:, :, i].numpy(), rowvar=False) + 0.01 * I
    return [mean, cov]


def score(train_outputs: list[np.ndarray], embedding_vectors: torch.Tensor, size: int) -> np.ndarray:
    """Smoothed anomaly maps (N x size x size), before ``main.py``'s min-max normalisation."""
    B, C, H, W = embedding_vectors.size()
    embedding_vectors = embedding_vectors.view(B, C, H * W).numpy()
    dist_list = []
    for i in range(H * W):
        mean = train_outputs[0][:, i]
        conv_inv = np.linalg.inv(train_outputs[1][:, :, i])
        dist = [mahalanobis(sample[:, i], mean, conv_inv) for sample in embedding_vectors]
        dist_list.append(dist)

    dist_list = np.array(dist_list).transpose(1, 0).reshape(B, H, W)

    dist_list = torch.tensor(dist_list)
    score_map = F.interpolate(dist_list.unsqueeze(1), size=size, mode='bilinear',
                              align_corners=False)[:, 0].numpy()  # main.py: .squeeze()

    for i in range(score_map.shape[0]):
        score_map[i] = gaussian_filter(score_map[i], sigma=4)
    return score_map


def peak_bytes(images: int, grid: int, channels: tuple[int, int, int]) -> int:
    """Estimated peak memory of ``embeddings`` on ``images`` images (float32 stage outputs).

    At the second ``embedding_concat`` these are alive at once: the stage outputs, the
    first join and its unfolded copy, the zero-filled ``z`` and its folded result.
    """
    positions = grid * grid
    stages = sum(c * positions // 4**k for k, c in enumerate(channels))
    first, joined = (channels[0] + channels[1]) * positions, sum(channels) * positions
    return 4 * images * (stages + 2 * first + 2 * joined)
