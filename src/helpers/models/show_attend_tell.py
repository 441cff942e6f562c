"""Show, Attend and Tell (Xu et al. 2015): a CNN feature-map encoder and an LSTM decoder with soft attention.

The encoder is the trunk of a classifier (a torchvision ResNet or a timm EfficientNet, everything
before its pooling and classifier), so the captioner can start from a network trained on
classification, as in the study. The decoder
attends over the encoder's grid of region features at every word, is trained with teacher forcing
and the doubly stochastic attention penalty, and decodes with beam search.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet


class FeatureMapEncoder(nn.Module):
    """A classifier's trunk whose last feature map, pooled to ``grid`` x ``grid``, gives ``grid**2`` region vectors.

    ``stages`` run in order (the stem first); ``from_classifier`` cuts them from a torchvision ResNet
    (stem, layer1 ... layer4) or a timm EfficientNet (stem, its seven block stages, the 1x1 head
    convolution), optionally behind an input adapter such as ``Renormalise``.
    """

    def __init__(self, stages: list[nn.Module], dim: int, grid: int = 4) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.dim = dim
        self.grid = grid

    @classmethod
    def from_classifier(cls, model: nn.Module, grid: int = 4) -> "FeatureMapEncoder":
        """The encoder of a ResNet or timm EfficientNet classifier (``nn.Sequential(adapter, net)`` too)."""
        adapter: list[nn.Module] = []
        if isinstance(model, nn.Sequential) and len(model) == 2:
            adapter, model = [model[0]], model[1]
        if isinstance(model, ResNet):
            stem = nn.Sequential(*adapter, model.conv1, model.bn1, model.relu, model.maxpool)
            return cls([stem, model.layer1, model.layer2, model.layer3, model.layer4], model.fc.in_features, grid)
        if all(hasattr(model, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):
            stem = nn.Sequential(*adapter, model.conv_stem, model.bn1)
            head = nn.Sequential(model.conv_head, model.bn2)
            return cls([stem, *model.blocks, head], model.num_features, grid)
        raise TypeError(f"no encoder for a {type(model).__name__}: expected a torchvision ResNet or a timm EfficientNet")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised images -> ``(B, grid*grid, dim)`` region features."""
        x = images
        for stage in self.stages:
            x = stage(x)
        return self.pool(x).flatten(2).transpose(1, 2)

    def fine_tune(self, enabled: bool, last: int = 1) -> None:
        """Freeze everything, then (if ``enabled``) unfreeze the ``last`` stages (the deepest ones)."""
        if not 1 <= last < len(self.stages):
            raise ValueError(f"last must be 1 to {len(self.stages) - 1} stages (the stem stays frozen), got {last}")
        for p in self.parameters():
            p.requires_grad = False
        if enabled:
            for stage in self.stages[-last:]:
                for p in stage.parameters():
                    p.requires_grad = True


class Renormalise(nn.Module):
    """Images normalised with one mean/std re-normalised to another (e.g. ImageNet's to EfficientNet-Lite's)."""

    def __init__(self, mean_in: tuple[float, ...], std_in: tuple[float, ...], mean_out: tuple[float, ...],
                 std_out: tuple[float, ...]) -> None:
        super().__init__()
        view = lambda v: torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)  # noqa: E731
        # x_out = (x_in * std_in + mean_in - mean_out) / std_out = x_in * scale + shift
        self.register_buffer("scale", view(std_in) / view(std_out))
        self.register_buffer("shift", (view(mean_in) - view(mean_out)) / view(std_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class SoftAttention(nn.Module):
    """Additive attention over region features given the decoder state."""

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.from_features = nn.Linear(feature_dim, attention_dim)
        self.from_hidden = nn.Linear(hidden_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)

    def forward(self, features: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(context (B, D), weights (B, P))`` for features ``(B, P, D)`` and hidden state ``(B, H)``."""
        energy = self.score(torch.tanh(self.from_features(features) + self.from_hidden(hidden)[:, None])).squeeze(2)
        weights = energy.softmax(dim=1)
        return (weights[:, :, None] * features).sum(1), weights


class AttentionDecoder(nn.Module):
    """LSTM caption decoder: each step reads the previous word and a gated attention context."""

    def __init__(self, vocab_size: int, feature_dim: int = 512, embed_dim: int = 128, hidden_dim: int = 256,
                 attention_dim: int = 128, dropout: float = 0.5) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.attention = SoftAttention(feature_dim, hidden_dim, attention_dim)
        self.init_h = nn.Linear(feature_dim, hidden_dim)
        self.init_c = nn.Linear(feature_dim, hidden_dim)
        self.gate = nn.Linear(hidden_dim, feature_dim)  # the paper's beta: how much context to let in
        self.lstm = nn.LSTMCell(embed_dim + feature_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def init_state(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Initial ``(h, c)`` from the mean region feature."""
        mean = features.mean(1)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))

    def step(self, features: torch.Tensor, words: torch.Tensor, h: torch.Tensor, c: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One word: ``(logits (B, V), h, c, attention weights (B, P))``."""
        context, weights = self.attention(features, h)
        context = torch.sigmoid(self.gate(h)) * context
        h, c = self.lstm(torch.cat([self.embed(words), context], dim=1), (h, c))
        return self.out(self.dropout(h)), h, c, weights

    def forward(self, features: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: ``captions (B, T)`` (``<start>`` ... ``<end>``, padded) -> logits ``(B, T-1, V)``
        predicting ``captions[:, 1:]``, and attention weights ``(B, T-1, P)``."""
        h, c = self.init_state(features)
        logits, weights = [], []
        for t in range(captions.shape[1] - 1):
            step_logits, h, c, alpha = self.step(features, captions[:, t], h, c)
            logits.append(step_logits)
            weights.append(alpha)
        return torch.stack(logits, 1), torch.stack(weights, 1)


def caption_loss(logits: torch.Tensor, captions: torch.Tensor, weights: torch.Tensor, pad: int = 0,
                 alpha_c: float = 1.0) -> torch.Tensor:
    """Cross-entropy on the non-pad target words plus the doubly stochastic attention penalty.

    The penalty ``alpha_c * mean_i (1 - sum_t alpha_ti)^2`` pushes every region to receive, summed
    over the words of its caption, about one unit of attention (Xu et al. 2015, eq. 14).
    """
    targets = captions[:, 1:]
    mask = targets != pad
    ce = F.cross_entropy(logits[mask], targets[mask])
    coverage = (weights * mask[:, :, None]).sum(1)
    return ce + alpha_c * ((1.0 - coverage) ** 2).mean()


@torch.no_grad()
def beam_search(decoder: AttentionDecoder, features: torch.Tensor, start: int, end: int, beam: int = 3,
                max_len: int = 20) -> tuple[list[int], torch.Tensor, float]:
    """The most probable caption of one image (``features (P, D)``): ``(ids, attention (T, P), log-prob)``.

    Keeps the ``beam`` best partial captions at every step; a caption is complete at ``<end>``
    (included in ``ids``). With ``beam=1`` this is greedy decoding. As in the widely used
    Show-Attend-Tell code (sgrvinod's ``caption.py``), the beam narrows by one for every caption that
    completes, so a longer caption can lose its slot to finished short ones: even a beam as wide as
    the vocabulary does not always return the most probable caption.
    """
    if beam < 1:
        raise ValueError(f"beam must be at least 1, got {beam}")
    decoder.eval()
    feats = features[None].expand(beam, *features.shape)
    h, c = decoder.init_state(feats)
    words = torch.full((beam,), start, dtype=torch.long, device=features.device)
    scores = torch.zeros(beam, device=features.device)
    sequences = torch.empty((beam, 0), dtype=torch.long, device=features.device)
    attention = torch.empty((beam, 0, features.shape[0]), device=features.device)
    complete: list[tuple[float, list[int], torch.Tensor]] = []
    alive = beam
    for step in range(max_len):
        logits, h, c, alpha = decoder.step(feats[:alive], words, h, c)
        total = scores[:, None] + logits.log_softmax(1)
        if step == 0:
            total = total[:1]  # every beam starts from the same <start>: expand only one
        best, flat = total.flatten().topk(min(alive, total.numel()))
        origin, word = flat // decoder.vocab_size, flat % decoder.vocab_size
        sequences = torch.cat([sequences[origin], word[:, None]], 1)
        attention = torch.cat([attention[origin], alpha[origin][:, None]], 1)
        h, c, scores = h[origin], c[origin], best
        finished = word == end
        for i in finished.nonzero().flatten().tolist():
            complete.append((float(scores[i]), sequences[i].tolist(), attention[i]))
        keep = ~finished
        alive = int(keep.sum())
        if alive == 0:
            break
        sequences, attention, h, c, scores, words = (t[keep] for t in (sequences, attention, h, c, scores, word))
    if not complete:  # nothing reached <end> within max_len: take the best unfinished caption
        complete = [(float(scores[i]), sequences[i].tolist(), attention[i]) for i in range(alive)]
    score, ids, weights = max(complete, key=lambda item: item[0])
    return ids, weights, score
