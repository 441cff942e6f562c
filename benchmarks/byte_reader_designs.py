"""Byte and bit readers that chapter 01 did not adopt, measured by ``byte_readers.py``.

Each reads the same (B, L) rows of byte values as ``helpers.models.bit_reader.BitReader`` (fixed
layout: header, pad tokens, scan) and turns them into the scan's bits with its ``scan_bits``. They
are the designs tried while looking for a byte model that learns on a CPU budget; they live here,
beside the benchmark, because no chapter trains them.
"""

from __future__ import annotations

import torch
from torch import nn

from helpers.models import bit_reader
from helpers.models.bit_reader import scan_bits

# (kernel, stride, padding): BitReader's two strided layers, plus a third, unstrided one
CONV_SHAPES = (*bit_reader.CONV_SHAPES, (3, 1, 1))


def conv_stack(channels: int, layers: int, batch_norm: bool = False) -> nn.Sequential:
    """BitReader's strided convolutions over bits (16-bit windows every 4 bits, then 8 of those every 4)."""
    modules: list[nn.Module] = []
    for k, (kernel, stride, padding) in enumerate(CONV_SHAPES[:layers]):
        modules.append(nn.Conv1d(2 if k == 0 else channels, channels, kernel, stride, padding=padding))
        modules += [nn.BatchNorm1d(channels)] if batch_norm else []
        modules.append(nn.ReLU())
    return nn.Sequential(*modules)


class _BitsInput(nn.Module):
    """Reads byte rows as BitReader does: drop the header, bits of the first ``n_bytes`` scan bytes."""

    def __init__(self, header: int, n_bytes: int) -> None:
        super().__init__()
        self.header, self.n_bytes = header, n_bytes

    def bits(self, values: torch.Tensor) -> torch.Tensor:
        return scan_bits(values, self.header, self.n_bytes)

    def positions(self, layers: int) -> int:
        """Length of the feature sequence after ``layers`` of ``CONV_SHAPES``."""
        length = 8 * self.n_bytes
        for kernel, stride, padding in CONV_SHAPES[:layers]:
            length = (length + 2 * padding - kernel) // stride + 1
        return length


class PooledReader(_BitsInput):
    """Three convolutions with batch norm, features averaged over 4 positions, linear readout."""

    def __init__(self, header: int, n_bytes: int, channels: int = 64, hidden: int = 256) -> None:
        super().__init__(header, n_bytes)
        self.convs = conv_stack(channels, 3, batch_norm=True)
        self.pool = nn.AvgPool1d(4)
        self.readout = nn.Sequential(nn.Flatten(), nn.Linear(channels * (self.positions(3) // 4), hidden), nn.ReLU(),
                                     nn.Linear(hidden, 10))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return self.readout(self.pool(self.convs(self.bits(values))))


class CountingReader(_BitsInput):
    """BitReader plus running sums of learned detectors (blocks ended so far, DC so far), then a conv."""

    def __init__(self, header: int, n_bytes: int, channels: int = 32, counters: int = 16, hidden: int = 256) -> None:
        super().__init__(header, n_bytes)
        self.convs = conv_stack(channels, 2)
        self.count = nn.Conv1d(channels, counters, 1)
        self.mix = nn.Sequential(nn.Conv1d(channels + counters, channels, 3, padding=1), nn.ReLU())
        self.readout = nn.Sequential(nn.Flatten(), nn.Linear(channels * self.positions(2), hidden), nn.ReLU(),
                                     nn.Linear(hidden, 10))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        features = self.convs(self.bits(values))
        sums = torch.cumsum(self.count(features), 2) / 16
        return self.readout(self.mix(torch.cat([features, sums], 1)))


class SlotReader(_BitsInput):
    """A soft parse: a learned end-of-block detector's running count assigns features to block slots.

    The expected number of blocks finished before each position weights that position's features into
    ``blocks`` slots (a Gaussian in slot index), so the readout sees features per 8x8 block rather
    than per bit offset, which drifts from file to file.
    """

    def __init__(self, header: int, n_bytes: int, channels: int = 48, blocks: int = 20, hidden: int = 256,
                 width: float = 0.5) -> None:
        super().__init__(header, n_bytes)
        self.convs = nn.Sequential(nn.Conv1d(2, channels, 16, 4, padding=6), nn.ReLU(),
                                   nn.Conv1d(channels, channels, 3, 1, padding=1), nn.ReLU())
        self.end_of_block = nn.Conv1d(channels, 1, 1)
        self.value = nn.Conv1d(channels, channels, 1)
        self.register_buffer("slots", torch.arange(blocks, dtype=torch.float32))
        self.width = width
        self.readout = nn.Sequential(nn.Flatten(), nn.Linear(blocks * channels, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 10))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        bits = self.bits(values)
        features = self.convs(bits)  # (B, C, T)
        ended = torch.sigmoid(self.end_of_block(features)).squeeze(1)  # (B, T)
        before = torch.cumsum(ended, 1) - ended
        weights = torch.softmax(-(before.unsqueeze(-1) - self.slots) ** 2 / self.width, -1)  # (B, T, K)
        weights = weights * (1 - bits[:, 1, ::4][:, : weights.shape[1]]).unsqueeze(-1)  # padding counts for nothing
        slots = torch.einsum("bct,btk->bck", torch.relu(self.value(features)), weights)
        return self.readout(slots / (weights.sum(1, keepdim=True) + 1))


class RecurrentReader(_BitsInput):
    """BitReader's two convolutions, then a GRU over the feature sequence; its last state is read out."""

    def __init__(self, header: int, n_bytes: int, channels: int = 32, hidden: int = 64) -> None:
        super().__init__(header, n_bytes)
        self.convs = conv_stack(channels, 2)
        self.gru = nn.GRU(channels, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 10)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        _, last = self.gru(self.convs(self.bits(values)).transpose(1, 2))
        return self.out(last[-1])


class AttentionReader(_BitsInput):
    """BitReader's two convolutions, a learned position embedding, two Transformer layers, mean pool."""

    def __init__(self, header: int, n_bytes: int, channels: int = 64, layers: int = 2) -> None:
        super().__init__(header, n_bytes)
        self.convs = conv_stack(channels, 2)
        self.position = nn.Parameter(torch.zeros(1, self.positions(2), channels))
        layer = nn.TransformerEncoderLayer(channels, 4, 2 * channels, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers)
        self.out = nn.Linear(channels, 10)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        tokens = self.convs(self.bits(values)).transpose(1, 2) + self.position
        return self.out(self.encoder(tokens).mean(1))


DESIGNS = {  # name -> (class, what it tries)
    "pooled, batch norm": (PooledReader, "wider (64), a third conv, batch norm, features pooled over 4 positions"),
    "pooled, restart markers": (PooledReader, "the pooled design on files with a restart marker after every block"),
    "running sums": (CountingReader, "cumulative sums of learned detectors: a block counter, a DC accumulator"),
    "block slots": (SlotReader, "a soft parse into 8x8-block slots from a learned end-of-block detector"),
    "convs + GRU": (RecurrentReader, "a recurrence over the strided features instead of a positional readout"),
    "convs + Transformer": (AttentionReader, "attention over the strided features (content, not offset)"),
}
RESTART_MARKED = {"pooled, restart markers"}  # designs that read files written with restart markers
