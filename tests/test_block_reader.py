"""The block reader: restart-marked files, their cut at the markers, and the network on the slots."""

import numpy as np
import pytest
import torch

from helpers.codecs.jpeg_bytes import (
    PAD_TOKEN,
    RESTART_MARKERS,
    Layout,
    decode_jpeg_bytes,
    encode_jpeg_bytes,
    header_length,
)
from helpers.models.bit_reader import byte_bits
from helpers.models.block_reader import BLOCKS, BlockReader, split_blocks


def images(n=12, seed=0):
    """Noisy 28x28 images with a bright bar, so that blocks differ in length."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for k, image in enumerate(out):
        image[k % 20:k % 20 + 6, 3:25] = 250
    return out


def blocks_by_hand(data: bytes) -> list[bytes]:
    """A file's coded bytes between restart markers, found by reading the bytes in order."""
    scan = data[header_length(data):]
    parts, current, i = [], bytearray(), 0
    while i < len(scan):
        if scan[i] == 0xFF and i + 1 < len(scan) and (scan[i + 1] in RESTART_MARKERS or scan[i + 1] == 0xD9):
            parts.append(bytes(current))
            current, i = bytearray(), i + 2
        else:
            current.append(scan[i])
            i += 1
    return parts


def fixed_rows(files: list[bytes], header: int) -> torch.Tensor:
    """The fixed layout: header, pad tokens, then the scan, as the chapter pads files."""
    return Layout(max(len(f) for f in files) + 5, pad_at=header).pad(files).values


def test_restart_markers_change_the_bytes_not_the_pixels():
    for image in images(4):
        plain, marked = encode_jpeg_bytes(image), encode_jpeg_bytes(image, restart=True)
        assert np.array_equal(decode_jpeg_bytes(plain), decode_jpeg_bytes(marked))
        assert len(marked) > len(plain) and b"\xff\xdd" in marked[:header_length(marked)]  # DRI in the header
        assert len(blocks_by_hand(marked)) == BLOCKS and len(blocks_by_hand(plain)) == 1


def test_split_blocks_cuts_the_scan_at_every_marker_as_a_byte_by_byte_reading_does():
    files = [encode_jpeg_bytes(image, restart=True) for image in images()]
    header = header_length(files[0])
    slots = split_blocks(fixed_rows(files, header), header, block_bytes=64)
    for file, row in zip(files, slots):
        expected = blocks_by_hand(file)
        got = [bytes([v for v in block.tolist() if v != PAD_TOKEN]) for block in row]
        assert got == expected
    short = split_blocks(fixed_rows(files, header), header, block_bytes=4)  # longer blocks are cut
    assert short.shape == (len(files), BLOCKS, 4)
    assert torch.equal(short, slots[:, :, :4])


def test_padding_after_the_file_reads_the_same_as_padding_before_the_scan():
    files = [encode_jpeg_bytes(image, restart=True) for image in images(3)]
    header = header_length(files[0])
    before = fixed_rows(files, header)
    after = Layout(before.shape[1]).pad(files).values
    assert torch.equal(split_blocks(before, header), split_blocks(after, header))


def test_a_zeroed_marker_merges_two_blocks():
    file = bytearray(encode_jpeg_bytes(images(1)[0], restart=True))
    header = header_length(bytes(file))
    first_marker = file.index(b"\xff\xd0", header)
    file[first_marker] = 0  # the 0xFF of RST0 zeroed: blocks 0 and 1 become one
    slots = split_blocks(fixed_rows([bytes(file)], header), header, block_bytes=80)
    filled = (slots[0] != PAD_TOKEN).any(-1)
    assert filled.sum() == BLOCKS - 1 and not filled[-1]


def test_block_bits_are_most_significant_first_with_a_padding_channel():
    slots = torch.tensor([[[0b10000001, PAD_TOKEN]]])  # (B, K, M)
    bits = byte_bits(slots).flatten(0, 1)  # one row per block, as the block reader reads them
    assert bits.shape == (1, 2, 16)
    assert bits[0, 0, :8].tolist() == [1, 0, 0, 0, 0, 0, 0, 1] and bits[0, 0, 8:].sum() == 0
    assert bits[0, 1].tolist() == [0] * 8 + [1] * 8


@pytest.mark.parametrize("conv_layers", [0, 1, 2])
def test_the_block_reader_gives_logits_and_gradients(conv_layers):
    files = [encode_jpeg_bytes(image, restart=True) for image in images(5)]
    header = header_length(files[0])
    torch.manual_seed(0)
    model = BlockReader(header, block_bytes=24, channels=8, conv_layers=conv_layers, block_dim=8, hidden=16)
    logits = model(fixed_rows(files, header))
    assert logits.shape == (5, 10) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_the_block_reader_sees_each_block_in_its_own_slot():
    """Changing one block's bytes changes that block's vector and no other."""
    file = encode_jpeg_bytes(images(1)[0], restart=True)
    header = header_length(file)
    model = BlockReader(header, block_bytes=32, channels=8, block_dim=8).eval()
    rows = fixed_rows([file], header)
    changed = rows.clone()
    scan_start = int((rows[0] == PAD_TOKEN).nonzero().max()) + 1
    changed[0, scan_start] ^= 0x0F  # the first byte of block 0 (never 0xFF here: a DC code)
    with torch.no_grad():
        vectors = [model.block(model.convs(byte_bits(split_blocks(r, header, block_bytes=32)).flatten(0, 1))) for r in
                   (rows, changed)]
    moved = (vectors[0] - vectors[1]).abs().sum(1) > 0
    assert moved.tolist() == [True] + [False] * (BLOCKS - 1)


def test_the_block_reader_rejects_bad_input():
    model = BlockReader(10, block_bytes=8, channels=4, block_dim=4, hidden=8)
    with pytest.raises(ValueError, match="batch, length"):
        model(torch.zeros(20, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(2, 20))
    with pytest.raises(ValueError, match="no scan"):
        model(torch.zeros(2, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="conv_layers"):
        BlockReader(10, conv_layers=3)
