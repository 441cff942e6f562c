import pytest
import torch

from helpers.codecs.jpeg_bytes import PAD_TOKEN
from helpers.methods.train import train_classifier
from helpers.models.byte_classifier import Bugs, ByteClassifier


def batch(variant, rows=5, length=80, header=40, seed=0):
    """Rows that share a header, then padding and random bytes of different lengths, as the variant lays them out."""
    g = torch.Generator().manual_seed(seed)
    files = [bytes(torch.randint(0, 256, (length - 3 * i,), generator=g).tolist()) for i in range(rows)]
    files = [files[0][:header] + f[header:] for f in files]
    return variant.layout(length, header).pad(files).values


def small(variant, **kw):
    torch.manual_seed(0)
    return ByteClassifier(variant, embed_dim=8, hidden=12, **kw)


@pytest.mark.parametrize("variant", [Bugs.fixed(), Bugs.faithful()], ids=lambda v: v.name)
@pytest.mark.parametrize("conv_layers", [2, 0])
def test_logits_have_one_row_per_file(variant, conv_layers):
    model = small(variant, conv_layers=conv_layers)
    assert model(batch(variant)).shape == (5, 10)


def test_variants_differ_where_the_original_did():
    faithful, fixed = Bugs.faithful(), Bugs.fixed()
    assert (faithful.pad_value, fixed.pad_value) == (1, PAD_TOKEN)
    shared, separate = small(faithful), small(fixed)
    assert shared.convs[0] is shared.convs[1] and separate.convs[0] is not separate.convs[1]
    n_params = [sum(p.numel() for p in m.parameters()) for m in (shared, separate)]
    assert n_params[1] - n_params[0] == 8 * 8 * 3 + 8 + 8  # one more conv, one more embedding row
    assert Bugs(shared_conv=True, pad_with_ones=False, uint8_overflow=False).name == "shared_conv"


def test_forget_gate_bias_starts_at_one():
    model = small(Bugs.fixed())
    bias = model.lstm.bias_ih_l0.detach() + model.lstm.bias_hh_l0.detach()
    assert torch.all(bias[12:24] == 1) and torch.all(bias[:12] == 0)


@pytest.mark.parametrize("variant", [Bugs.fixed(), Bugs.faithful()], ids=lambda v: v.name)
def test_sharing_the_common_prefix_is_exact_for_outputs_and_gradients(variant):
    x = batch(variant)
    results = []
    for share in (True, False):
        model = small(variant, share_prefix=share)
        assert (model.shared_steps(x) > 0) == share
        loss = model(x).logsumexp(1).sum()
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (l1, g1), (l2, g2) = results
    torch.testing.assert_close(l1, l2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_layouts_put_the_padding_where_each_variant_does():
    faithful, fixed = Bugs.faithful().layout(700, 328), Bugs.fixed().layout(700, 328)
    assert (faithful.pad_value, faithful.pad_at) == (1, None)
    assert (fixed.pad_value, fixed.pad_at) == (PAD_TOKEN, 328)
    assert Bugs.fixed().layout(372, 328, skip=328).pad_at == 0  # no header: padding goes first


def test_corrupt_bytes_are_valid_input_but_bad_shapes_and_values_are_not():
    model = small(Bugs.fixed())
    zeros = torch.zeros(3, 40, dtype=torch.long)  # a file wiped to zeros is still a file
    assert torch.isfinite(model(zeros)).all()
    with pytest.raises(ValueError, match="batch, length"):
        model(torch.zeros(40, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(2, 40))
    with pytest.raises(ValueError, match="0..256"):
        model(torch.full((2, 40), 300))
    with pytest.raises(ValueError, match="0..255"):
        small(Bugs.faithful())(torch.full((2, 40), PAD_TOKEN))  # the faithful vocabulary has no pad token
    with pytest.raises(ValueError, match="conv window"):
        model(torch.zeros(2, 4, dtype=torch.long))


def test_one_training_step_reduces_the_loss_on_a_tiny_batch():
    variant = Bugs.fixed()
    x, y = batch(variant, rows=8), torch.arange(8) % 10
    model = small(variant)
    history = train_classifier(model, [(x, y)], torch.optim.Adam(model.parameters(), lr=1e-2), epochs=2)
    assert history.train_loss[1] < history.train_loss[0]


def rows_differing_at(position, rows=6, length=120, seed=1):
    """Random byte rows that are identical before ``position`` and differ from it on."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (rows, length), generator=g)
    x[:, :position] = x[0, :position]
    x[1:, position] = (x[0, position] + torch.arange(1, rows)) % 256
    return x


@pytest.mark.parametrize("position", [0, 1, 3, 4, 30, 33, 70, 119])
def test_shared_prefix_path_equals_the_plain_path_wherever_rows_first_differ(position):
    x = rows_differing_at(position)
    shared, plain = small(Bugs.faithful()), small(Bugs.faithful(), share_prefix=False)
    steps = shared.shared_steps(x)
    assert 0 <= steps <= max(position - shared.receptive_field + 1, 0)
    torch.testing.assert_close(shared(x), plain(x), atol=1e-6, rtol=1e-5)


def test_zeroed_header_bytes_do_not_change_what_the_shared_path_computes():
    """The glitch experiment: a few zeroed bytes inside the common header, different in every row."""
    variant = Bugs.fixed()
    x = batch(variant, rows=6, length=120, header=80).clone()
    for row in range(1, 6):
        x[row, 2 * row] = 0
    shared, plain = small(variant), small(variant, share_prefix=False)
    assert shared.shared_steps(x) == 0
    torch.testing.assert_close(shared(x), plain(x), atol=1e-6, rtol=1e-5)
