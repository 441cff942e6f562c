"""A classifier of raw file bytes: byte embedding -> Conv1D x2 -> 2-layer LSTM -> linear.

The architecture of Hi-king (2017): each byte (0..255) is embedded, two 1-D convolutions (kernel 3,
no padding, ReLU) look at neighbouring bytes, an LSTM reads the result from the first byte to the
last, and a linear layer maps its final state to class logits. ``conv_layers=0`` is the LSTM-only
ablation. ``Bugs`` collects the original code's quirks that we can switch on (``faithful``) or off.

Shared prefix: every JPEG file of the same size and quality starts with the same header, so the
LSTM's state after the header is the same for every file of a batch. The model computes that prefix
once and starts the whole batch from it, which is exact (same outputs and gradients up to float
rounding) and saves the header's share of the compute, about half of it for 28x28 digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from helpers.codecs.jpeg_bytes import PAD_TOKEN, Layout

SHARE_STEP = 32  # shared prefixes are rounded down to a multiple: few distinct shapes for the LSTM kernels


@dataclass(frozen=True)
class Bugs:
    """The original code's quirks: on (``faithful()``) reproduces it, off (``fixed()``) repairs it."""

    shared_conv: bool  # the two conv layers are one layer applied twice (``[block] * 2`` in the original)
    pad_with_ones: bool  # files end in padding of byte value 1, which the LSTM reads last
    uint8_overflow: bool  # pixels scaled by 256 before the uint8 cast, so 255 wraps to 0

    @classmethod
    def faithful(cls) -> "Bugs":
        """All quirks of the original code."""
        return cls(shared_conv=True, pad_with_ones=True, uint8_overflow=True)

    @classmethod
    def fixed(cls) -> "Bugs":
        """Two conv layers, a pad token no byte can take placed before the scan, no overflow."""
        return cls(shared_conv=False, pad_with_ones=False, uint8_overflow=False)

    @property
    def pad_value(self) -> int:
        """The value that fills a file up to the pad width."""
        return 1 if self.pad_with_ones else PAD_TOKEN

    def layout(self, width: int, header: int, skip: int = 0) -> Layout:
        """Rows of ``width`` values: 1s after the file (original), or pad tokens between header and scan.

        Padding before the scan makes the file's last byte the LSTM's last step, and keeps the
        header a common prefix of every row (see the module docstring).
        """
        return Layout(width, self.pad_value, None if self.pad_with_ones else header - skip, skip)

    @property
    def name(self) -> str:
        """'faithful', 'fixed' or a list of the quirks that are on."""
        if self == Bugs.faithful():
            return "faithful"
        if self == Bugs.fixed():
            return "fixed"
        return "+".join(k for k, v in self.__dict__.items() if v) or "fixed"


class ByteClassifier(nn.Module):
    """Class logits from a batch (B, L) of byte values; see the module docstring."""

    def __init__(
        self,
        variant: Bugs,
        *,
        embed_dim: int = 100,
        hidden: int = 100,
        conv_layers: int = 2,
        lstm_layers: int = 2,
        kernel: int = 3,
        num_classes: int = 10,
        forget_bias: float = 1.0,
        share_prefix: bool = True,
    ) -> None:
        super().__init__()
        self.variant, self.kernel, self.conv_layers = variant, kernel, conv_layers
        self.share_prefix = share_prefix
        self.vocab_size = 256 if variant.pad_with_ones else PAD_TOKEN + 1
        self.embed = nn.Embedding(self.vocab_size, embed_dim)
        if variant.shared_conv and conv_layers:
            self.convs = nn.ModuleList([nn.Conv1d(embed_dim, embed_dim, kernel)] * conv_layers)
        else:
            self.convs = nn.ModuleList(nn.Conv1d(embed_dim, embed_dim, kernel) for _ in range(conv_layers))
        self.lstm = nn.LSTM(embed_dim, hidden, num_layers=lstm_layers, batch_first=True)
        self.out = nn.Linear(hidden, num_classes)
        with torch.no_grad():  # forget-gate bias 1, as Chainer (the original's framework) initialises it
            for name, param in self.lstm.named_parameters():
                if name.startswith("bias_ih"):
                    param.zero_()
                    param[hidden:2 * hidden] = forget_bias
                elif name.startswith("bias_hh"):
                    param.zero_()

    @property
    def receptive_field(self) -> int:
        """Bytes seen by one position after the convolutions."""
        return 1 + (self.kernel - 1) * self.conv_layers

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) byte values -> (B, L - receptive_field + 1, embed_dim) inputs of the LSTM."""
        h = self.embed(x).transpose(1, 2)
        for conv in self.convs:
            h = torch.relu(conv(h))
        return h.transpose(1, 2)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error unless ``x`` is a (B, L) integer tensor of valid values, L long enough."""
        if x.ndim != 2:
            raise ValueError(f"expected byte values of shape (batch, length), got {tuple(x.shape)}")
        if x.dtype.is_floating_point or x.dtype == torch.bool:
            raise TypeError(f"expected integer byte values, got dtype {x.dtype}")
        if x.shape[1] < self.receptive_field:
            raise ValueError(f"sequences of {x.shape[1]} values are shorter than the conv window {self.receptive_field}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
            raise ValueError(f"values must lie in 0..{self.vocab_size - 1}, got {int(x.min())}..{int(x.max())}")

    def shared_steps(self, x: torch.Tensor) -> int:
        """How many leading LSTM steps are identical for every row of ``x`` (0 if not worth sharing)."""
        if not self.share_prefix or len(x) < 2:
            return 0
        same = int((x == x[:1]).all(0).long().cumprod(0).sum())
        steps = min(same, x.shape[1] - 1) - self.receptive_field + 1  # negative: rows differ early
        return max(steps, 0) // SHARE_STEP * SHARE_STEP

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) byte values -> (B, num_classes) logits, from the LSTM's state after the last value."""
        self.check_input(x)
        x = x.long()
        shared = self.shared_steps(x)
        state = None
        if shared:
            _, (h, c) = self.lstm(self.features(x[:1, :shared + self.receptive_field - 1]))
            state = (h.expand(-1, len(x), -1).contiguous(), c.expand(-1, len(x), -1).contiguous())
            x = x[:, shared:]
        _, (h_n, _) = self.lstm(self.features(x), state)
        return self.out(h_n[-1])
