"""A faster reader of JPEG files: the scan's bits, strided 1-D convolutions and a positional readout.

The post's model (``byte_classifier``) embeds whole bytes and reads them with an LSTM, one step per
byte. But the scan is a Huffman-coded *bit* stream: codewords are 2 to 16 bits long and start at any
bit, so a byte is an arbitrary slice of one or two codewords. ``BitReader`` reads what the encoder
wrote:

- the header (the same for every file of one size and quality, so it says nothing about the class)
  is dropped and the scan's bytes are moved to the front, so bit ``i`` of every row is bit ``i`` of
  its scan (padding becomes a second input channel that marks where a file has ended);
- strided convolutions over the bits (first kernel 16 bits, the longest codeword) find codewords;
  Huffman codes resynchronise within a few codewords, so a window can decode from any offset;
- a linear readout over every position keeps *where* in the scan a pattern occurs: the blocks of
  8x8 pixels are coded in raster order, so position in the scan is roughly position in the image.

``conv_layers=0`` reads the bits with the linear readout alone (the "- CNN" ablation of this design).
"""

from __future__ import annotations

import torch
from torch import nn

from helpers.codecs.jpeg_bytes import PAD_TOKEN

BIT_ORDER = torch.arange(7, -1, -1, dtype=torch.uint8)  # most significant bit first, as JPEG writes them
# (kernel, stride, padding) of the strided layers: 16-bit windows every 4 bits, then 8 of those every 4
CONV_SHAPES = ((16, 4, 6), (8, 4, 2))


def byte_bits(x: torch.Tensor) -> torch.Tensor:
    """(..., M) byte/pad values -> (..., 2, 8 * M): bits, most significant first, and a channel marking padding."""
    pad = x == PAD_TOKEN
    bits = (x.clamp(0, 255).to(torch.uint8).unsqueeze(-1) >> BIT_ORDER.to(x.device)) & 1
    bits = bits.masked_fill(pad.unsqueeze(-1), 0).flatten(-2).float()
    return torch.stack([bits, pad.repeat_interleave(8, -1).float()], -2)


def scan_bits(values: torch.Tensor, header: int, n_bytes: int) -> torch.Tensor:
    """(B, L) byte/pad values -> (B, 2, 8 * n_bytes): the scan's first bits and a channel marking padding.

    The first ``header`` values of each row are dropped, pad tokens (``PAD_TOKEN``) are moved behind
    the file's bytes (their order otherwise kept), and the rest is cut or filled to ``n_bytes``.
    """
    x = values[:, header:].long()
    if x.shape[1] < n_bytes:
        x = torch.cat([x, x.new_full((len(x), n_bytes - x.shape[1]), PAD_TOKEN)], 1)
    order = torch.argsort((x == PAD_TOKEN).to(torch.int8), dim=1, stable=True)
    return byte_bits(torch.gather(x, 1, order)[:, :n_bytes])


def strided_convs(channels: int, conv_layers: int, n_bits: int) -> tuple[nn.Sequential, int]:
    """The first ``conv_layers`` of ``CONV_SHAPES`` (ReLU after each) over 2-channel bit rows of ``n_bits``,
    and the flattened size of their output (``2 * n_bits`` when ``conv_layers`` is 0)."""
    if conv_layers not in (0, 1, 2):
        raise ValueError(f"conv_layers must be 0, 1 or 2, got {conv_layers}")
    layers: list[nn.Module] = []
    length, width = n_bits, 2
    for kernel, stride, padding in CONV_SHAPES[:conv_layers]:
        layers += [nn.Conv1d(width, channels, kernel, stride, padding=padding), nn.ReLU()]
        length, width = (length + 2 * padding - kernel) // stride + 1, channels
    return nn.Sequential(*layers), width * length


def check_rows(values: torch.Tensor, header: int) -> None:
    """Refuse anything but (batch, length) integer byte rows that hold more than the ``header``."""
    if values.ndim != 2:
        raise ValueError(f"expected byte values of shape (batch, length), got {tuple(values.shape)}")
    if values.dtype.is_floating_point or values.dtype == torch.bool:
        raise TypeError(f"expected integer byte values, got dtype {values.dtype}")
    if values.shape[1] <= header:
        raise ValueError(f"rows of {values.shape[1]} values hold no scan after a {header}-byte header")


class BitReader(nn.Module):
    """Class logits from (B, L) rows of the fixed layout (header, pad tokens, scan); see the module docstring."""

    def __init__(self, header: int, *, n_bytes: int = 256, channels: int = 32, conv_layers: int = 2,
                 hidden: int = 256, num_classes: int = 10) -> None:
        super().__init__()
        self.header, self.n_bytes, self.conv_layers = header, n_bytes, conv_layers
        self.convs, features = strided_convs(channels, conv_layers, 8 * n_bytes)
        self.readout = nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), nn.ReLU(),
                                     nn.Linear(hidden, num_classes))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """(B, L) byte/pad values -> (B, num_classes) logits."""
        check_rows(values, self.header)
        return self.readout(self.convs(scan_bits(values, self.header, self.n_bytes)))
