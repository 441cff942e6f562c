import pytest
import timm
import torch
from torch import nn
from torchvision.models import resnet18

from helpers.models.show_attend_tell import (
    AttentionDecoder,
    FeatureMapEncoder,
    Renormalise,
    beam_search,
    caption_loss,
)

V, P, D = 12, 4, 8


def decoder(seed=0):
    torch.manual_seed(seed)
    return AttentionDecoder(V, feature_dim=D, embed_dim=6, hidden_dim=10, attention_dim=5, dropout=0.0).eval()


def greedy(dec, features, start, end, max_len):
    h, c = dec.init_state(features[None])
    word, ids = torch.tensor([start]), []
    for _ in range(max_len):
        logits, h, c, _ = dec.step(features[None], word, h, c)
        word = logits.argmax(1)
        ids.append(int(word))
        if ids[-1] == end:
            break
    return ids


def test_encoder_gives_a_grid_of_region_features():
    encoder = FeatureMapEncoder.from_classifier(resnet18(weights=None, num_classes=3), grid=2).eval()
    out = encoder(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 4, 512) and encoder.dim == 512
    encoder.fine_tune(True, last=1)
    trainable = {n.split(".")[1] for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == {"4"}  # only layer4 (stage 0 is the stem)
    encoder.fine_tune(False)
    assert not any(p.requires_grad for p in encoder.parameters())
    with pytest.raises(ValueError, match="last"):
        encoder.fine_tune(True, last=0)
    with pytest.raises(TypeError, match="no encoder"):
        FeatureMapEncoder.from_classifier(nn.Linear(3, 3))


def test_efficientnet_encoder_behind_a_renormalising_adapter():
    lite = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=3).eval()
    adapter = Renormalise((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (0.5,) * 3, (0.5,) * 3)
    x01 = torch.rand(2, 3, 64, 64)
    imagenet = (x01 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(adapter(imagenet), (x01 - 0.5) / 0.5)
    encoder = FeatureMapEncoder.from_classifier(nn.Sequential(adapter, lite), grid=2).eval()
    assert encoder(imagenet).shape == (2, 4, 1280) and encoder.dim == 1280 and len(encoder.stages) == 9
    # the encoder is the classifier's own trunk: pooling its map gives the classifier's pre-logits
    pooled = encoder.pool.__class__(1)
    x = encoder.stages[0](imagenet)
    for stage in encoder.stages[1:]:
        x = stage(x)
    torch.testing.assert_close(pooled(x).flatten(1), lite.forward_head(lite.forward_features((x01 - 0.5) / 0.5),
                                                                        pre_logits=True))


def test_teacher_forcing_shapes_and_attention_sums_to_one():
    dec = decoder()
    captions = torch.tensor([[1, 5, 6, 2, 0], [1, 7, 2, 0, 0]])
    logits, weights = dec(torch.randn(2, P, D), captions)
    assert logits.shape == (2, 4, V) and weights.shape == (2, 4, P)
    torch.testing.assert_close(weights.sum(2), torch.ones(2, 4))


def test_loss_ignores_padding_and_penalises_uneven_attention():
    captions = torch.tensor([[1, 5, 2, 0]])
    logits = torch.zeros(1, 3, V)
    logits[0, 0, 5] = logits[0, 1, 2] = 20.0  # confident and right on the two real words
    logits[0, 2, 9] = 20.0  # wrong only at the padded position
    even = torch.full((1, 3, 2), 0.5)  # two words x 0.5 = one unit per region
    assert float(caption_loss(logits, captions, even, alpha_c=1.0)) == pytest.approx(0.0, abs=1e-6)
    skewed = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.5, 0.5]]])
    assert float(caption_loss(logits, captions, skewed, alpha_c=1.0)) == pytest.approx(1.0, abs=1e-5)
    assert float(caption_loss(logits, captions, skewed, alpha_c=0.0)) == pytest.approx(0.0, abs=1e-6)


def test_training_step_reduces_the_loss():
    dec = decoder()
    features, captions = torch.randn(4, P, D), torch.tensor([[1, 5, 6, 2]] * 4)
    opt = torch.optim.Adam(dec.parameters(), lr=0.05)
    losses = []
    for _ in range(20):
        logits, weights = dec(features, captions)
        loss = caption_loss(logits, captions, weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_of_one_is_the_greedy_path(seed):
    dec = decoder(seed)
    features = torch.randn(P, D, generator=torch.Generator().manual_seed(seed))
    ids, weights, score = beam_search(dec, features, start=1, end=2, beam=1, max_len=8)
    assert ids == greedy(dec, features, 1, 2, 8)
    assert weights.shape == (len(ids), P) and score == pytest.approx(sequence_log_prob(dec, features, 1, ids), abs=1e-4)


@torch.no_grad()
def sequence_log_prob(dec, features, start, ids):
    """Exact log-probability of ``ids`` after ``start``, by teacher forcing."""
    h, c = dec.init_state(features[None])
    word, total = torch.tensor([start]), 0.0
    for token in ids:
        logits, h, c, _ = dec.step(features[None], word, h, c)
        total += float(logits.log_softmax(1)[0, token])
        word = torch.tensor([token])
    return total


def test_bad_beam_is_rejected_and_length_is_capped():
    dec = decoder(3)
    features = torch.randn(P, D, generator=torch.Generator().manual_seed(3))
    for max_len in (1, 3, 6):
        ids, weights, score = beam_search(dec, features, 1, 2, beam=5, max_len=max_len)
        assert len(ids) == max_len or ids[-1] == 2  # stops at <end> or at the cap, and <end> only last
        assert len(ids) <= max_len and 2 not in ids[:-1] and weights.shape == (len(ids), P)
        assert score == pytest.approx(sequence_log_prob(dec, features, 1, ids), abs=1e-4)  # its own bookkeeping
    with torch.no_grad():
        dec.out.bias[2] = -1e4  # <end> can no longer win: every caption runs to the cap
    for max_len in (1, 3, 6):
        ids, weights, _ = beam_search(dec, features, 1, 2, beam=5, max_len=max_len)
        assert len(ids) == max_len and 2 not in ids and weights.shape == (max_len, P)
    with pytest.raises(ValueError, match="at least 1"):
        beam_search(dec, features, 1, 2, beam=0)


def brute_force_best(dec, features, start, end, max_len):
    """The most probable caption that ends with ``end`` within ``max_len`` words, by enumerating them all."""
    import itertools

    words = [w for w in range(dec.vocab_size) if w != end]
    captions = [list(c) + [end] for n in range(max_len) for c in itertools.product(words, repeat=n)]
    return max(captions, key=lambda ids: sequence_log_prob(dec, features, start, ids))


def test_beam_as_wide_as_the_vocabulary_finds_the_brute_force_best_of_a_trained_decoder():
    """A tiny decoder learns: "a" (0.6) then one of three words, or "b" (0.4) then <end>. Greedy takes "a"
    (a caption of probability 0.2); "b <end>" (0.4) is the best caption, which beam search must find."""
    pad, start, end, a, b, *rest = range(8)
    captions = torch.tensor([[start, a, rest[i % 3], end] for i in range(6)] + [[start, b, end, pad]] * 4)
    torch.manual_seed(0)
    dec = AttentionDecoder(8, feature_dim=D, embed_dim=6, hidden_dim=10, attention_dim=5, dropout=0.0)
    features = torch.randn(P, D, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(dec.parameters(), lr=0.05)
    for _ in range(150):
        logits, weights = dec(features.expand(len(captions), P, D), captions)
        loss = caption_loss(logits, captions, weights, pad=pad, alpha_c=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    dec.eval()
    best = brute_force_best(dec, features, start, end, max_len=3)
    assert best == [b, end]
    ids, _, score = beam_search(dec, features, start, end, beam=dec.vocab_size, max_len=3)
    assert ids == best and score == pytest.approx(sequence_log_prob(dec, features, start, best), abs=1e-4)
    greedy_ids = greedy(dec, features, start, end, 3)
    assert greedy_ids[0] == a and beam_search(dec, features, start, end, beam=1, max_len=3)[0] == greedy_ids


class MarkovDecoder(AttentionDecoder):
    """A decoder whose next-word distribution depends on the previous word only (a fixed table)."""

    def __init__(self, table):
        super().__init__(len(table), feature_dim=D, embed_dim=2, hidden_dim=2, attention_dim=2, dropout=0.0)
        self.table = torch.log(torch.tensor(table))

    def step(self, features, words, h, c):
        return self.table[words], h, c, torch.full((len(words), features.shape[1]), 1 / features.shape[1])


def test_beam_search_finds_the_brute_force_best_caption_that_greedy_misses():
    import itertools

    # words: 0 start, 1 end, 2 "a", 3 "b". Greedy takes "a" (0.6) but "a" ends badly; "b" leads to a sure end.
    table = [[0.0001, 0.0999, 0.6, 0.3], [0.25] * 4, [0.0001, 0.1999, 0.4, 0.4], [0.0001, 0.9, 0.0499, 0.05]]
    dec, features = MarkovDecoder(table).eval(), torch.randn(P, D)
    max_len = 4
    candidates = [list(words) + [1] for n in range(max_len) for words in itertools.product(range(4), repeat=n)]
    best = max(candidates, key=lambda ids: sequence_log_prob(dec, features, 0, ids))
    assert best == [3, 1]  # "b <end>": 0.3 * 0.9 = 0.27, above every caption that starts with "a"
    assert greedy(dec, features, 0, 1, max_len)[0] == 2  # greedy starts with "a"
    ids, _, score = beam_search(dec, features, 0, 1, beam=3, max_len=max_len)
    assert ids == best and score == pytest.approx(sequence_log_prob(dec, features, 0, best))
    with pytest.raises(ValueError, match="beam"):
        beam_search(dec, torch.randn(P, D), 1, 2, beam=0)
