import pytest
import torch

from helpers.codecs.jpeg_bytes import PAD_TOKEN
from helpers.models.bit_reader import BitReader, scan_bits


def rows(header=4, scans=((0xA5, 0x01), (0xFF,)), width=8):
    """Rows of the fixed layout: ``header`` bytes 7, pad tokens, then each scan at the end."""
    out = torch.full((len(scans), width), PAD_TOKEN)
    out[:, :header] = 7
    for i, scan in enumerate(scans):
        out[i, width - len(scan):] = torch.tensor(scan)
    return out


def test_scan_bits_drop_the_header_and_move_the_scan_to_the_front():
    x = scan_bits(rows(), header=4, n_bytes=3)
    assert x.shape == (2, 2, 24)
    assert x[0, 0, :16].tolist() == [1, 0, 1, 0, 0, 1, 0, 1] + [0] * 7 + [1]  # A5 01, most significant bit first
    assert x[0, 1].tolist() == [0] * 16 + [1] * 8  # padding marked after the file's two bytes
    assert x[1, 0, :8].tolist() == [1] * 8 and x[1, 1, 8:].tolist() == [1] * 16
    assert x[:, 0][x[:, 1] == 1].sum() == 0  # padded bits carry no value


def test_scan_bits_cut_long_scans_and_fill_short_rows():
    long = scan_bits(rows(scans=((1, 2, 3, 4),)), header=4, n_bytes=2)
    assert long.shape == (1, 2, 16) and long[0, 1].sum() == 0
    short = scan_bits(rows(scans=((1,),), width=5), header=4, n_bytes=4)
    assert short[0, 1].tolist() == [0] * 8 + [1] * 24


@pytest.mark.parametrize("conv_layers", [0, 1, 2])
def test_logits_have_one_row_per_file_and_ignore_the_header(conv_layers):
    torch.manual_seed(0)
    model = BitReader(header=4, n_bytes=16, channels=8, conv_layers=conv_layers, hidden=16, num_classes=3)
    x = torch.randint(0, 256, (5, 20))
    x[:, 4:6] = PAD_TOKEN
    logits = model(x)
    assert logits.shape == (5, 3)
    wrecked = x.clone()
    wrecked[:, :4] = 0  # zeroed header bytes: the reader never looks at them
    torch.testing.assert_close(model(wrecked), logits)
    changed = x.clone()
    changed[:, 10] ^= 0x80  # one flipped scan bit changes what it reads
    assert not torch.allclose(model(changed), logits)


def test_bad_inputs_are_refused_with_a_clear_error():
    model = BitReader(header=4, n_bytes=8, channels=4, hidden=8)
    with pytest.raises(ValueError, match="batch, length"):
        model(torch.zeros(10, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(2, 10))
    with pytest.raises(ValueError, match="no scan"):
        model(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="conv_layers"):
        BitReader(header=4, conv_layers=3)


def test_a_few_training_steps_fit_a_tiny_batch():
    torch.manual_seed(0)
    model = BitReader(header=2, n_bytes=8, channels=8, hidden=32, num_classes=2)
    x = torch.randint(0, 256, (16, 10))
    y = torch.arange(16) % 2
    x[:, 2] = y * 0xF0  # the class is written in the scan's first byte
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert (model(x).argmax(1) == y).all()
