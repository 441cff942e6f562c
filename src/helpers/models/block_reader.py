"""A reader of restart-marked JPEG files: one slot per 8x8 block, the same small network on each.

In a plain baseline JPEG the 8x8 blocks follow one another in a single Huffman-coded bit stream,
each block's DC value coded as a difference from the previous block's: where a block begins
depends on every codeword before it, and its brightness on every block before it. The bit reader
(``bit_reader``) learns codeword statistics at each offset and stops near 0.6 on Fashion-MNIST.

Written with a restart marker after every block (``encode_jpeg_bytes(..., restart=True)``), the
file says where each block begins: the marker ``FF D0``..``FF D7`` is byte aligned and cannot
occur inside the coded data (a coded ``FF`` byte is always followed by a stuffed ``00``), and the
DC prediction restarts, so each block's first codeword is its own DC value. ``BlockReader``:

- ``split_blocks`` cuts the scan at the markers into ``blocks`` slots of ``block_bytes`` bytes (a
  fixed framing step, as dropping the header is; a zeroed marker byte merges two blocks);
- every slot's bits go through the same strided convolutions (``bit_reader.CONV_SHAPES``) and a
  linear map to a block vector, aligned at the block's first bit;
- the block vectors, in raster order (slot ``k`` is block ``k``), are read by a small MLP.

``conv_layers=0`` maps each block's bits linearly (the "- CNN" ablation of this design).
"""

from __future__ import annotations

import torch
from torch import nn

from helpers.codecs.jpeg_bytes import PAD_TOKEN, RESTART_MARKERS
from helpers.models.bit_reader import byte_bits, check_rows, strided_convs

BLOCKS = 16  # a 28x28 image is coded as 4 x 4 blocks of 8x8 pixels
END_MARKERS = range(RESTART_MARKERS.start, 0xDA)  # RST0..RST7 and EOI (0xD9) end a block's data


def split_blocks(values: torch.Tensor, header: int, blocks: int = BLOCKS, block_bytes: int = 32) -> torch.Tensor:
    """(B, L) byte/pad values -> (B, blocks, block_bytes): each block's coded bytes, padded with ``PAD_TOKEN``.

    The first ``header`` values are dropped and pad tokens skipped; a block's bytes run from the end
    of one marker (or the start of the scan) to the next ``FF Dx`` marker. Bytes beyond
    ``block_bytes`` and blocks beyond ``blocks`` are cut.
    """
    x = values[:, header:].long()
    n, length = x.shape
    real = x != PAD_TOKEN  # pad tokens sit in one run: before the scan (fixed layout) or after the file
    following = torch.cat([x[:, 1:], x.new_full((n, 1), PAD_TOKEN)], 1)
    marker = (x == 0xFF) & (following >= END_MARKERS.start) & (following < END_MARKERS.stop)
    marker_byte = marker | torch.cat([marker.new_zeros(n, 1), marker[:, :-1]], 1)
    block = torch.cumsum(marker.long(), 1) - marker.long()  # markers seen before this byte
    positions = torch.arange(length, device=x.device).expand(n, length)
    first = real & (torch.cumsum(real.long(), 1) == 1)  # the scan's first byte
    after_marker = torch.cat([marker.new_zeros(n, 2), marker[:, :-2]], 1)  # 2 bytes after a marker's FF
    offset = positions - torch.cummax((first | after_marker).long() * positions, 1).values
    keep = real & ~marker_byte & (block < blocks) & (offset < block_bytes)
    out = x.new_full((n, blocks * block_bytes), PAD_TOKEN)
    rows = torch.arange(n, device=x.device).unsqueeze(1).expand(n, length)
    out[rows[keep], (block * block_bytes + offset)[keep]] = x[keep]
    return out.view(n, blocks, block_bytes)


class BlockReader(nn.Module):
    """Class logits from (B, L) rows of restart-marked files (fixed layout); see the module docstring."""

    def __init__(self, header: int, *, blocks: int = BLOCKS, block_bytes: int = 32, channels: int = 32,
                 conv_layers: int = 2, block_dim: int = 64, hidden: int = 256, num_classes: int = 10) -> None:
        super().__init__()
        self.header, self.blocks, self.block_bytes, self.conv_layers = header, blocks, block_bytes, conv_layers
        self.convs, features = strided_convs(channels, conv_layers, 8 * block_bytes)
        self.block = nn.Sequential(nn.Flatten(), nn.Linear(features, block_dim), nn.ReLU())
        self.readout = nn.Sequential(nn.Flatten(), nn.Linear(blocks * block_dim, hidden), nn.ReLU(),
                                     nn.Linear(hidden, num_classes))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """(B, L) byte/pad values -> (B, num_classes) logits."""
        check_rows(values, self.header)
        slots = split_blocks(values, self.header, self.blocks, self.block_bytes)  # (B, K, M)
        vectors = self.block(self.convs(byte_bits(slots).flatten(0, 1)))
        return self.readout(vectors.view(len(values), self.blocks, -1))
