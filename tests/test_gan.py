import math

import pytest
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from helpers.core.cache import Checkpointer
from helpers.methods import gan
from helpers.methods.gan import (
    ImageBank,
    LossWeights,
    TrainSettings,
    critic_loss,
    evaluate_translations,
    fid_into_targets,
    generator_loss,
    gradient_penalty,
    inception_fid,
    kid_score,
    one_hot,
    shuffled_targets,
    to_uint8,
    train_stargan,
    translate_to_every_domain,
)
from helpers.models.stargan import Discriminator, Generator


def test_gradient_penalty_of_a_linear_critic_is_known():
    real, fake = torch.ones(4, 3, 2, 2), torch.zeros(4, 3, 2, 2)
    alpha = torch.rand(4, 1, 1, 1)
    w = torch.full((3, 2, 2), 0.5)  # gradient w everywhere: norm sqrt(12 * 0.25) = sqrt(3)
    penalty = gradient_penalty(lambda x: (x * w).sum(dim=(1, 2, 3)), real, fake, alpha)
    assert penalty.item() == pytest.approx((math.sqrt(3) - 1) ** 2, rel=1e-6)
    unit = w / w.norm()
    assert gradient_penalty(lambda x: (x * unit).sum(dim=(1, 2, 3)), real, fake, alpha).item() == pytest.approx(0, abs=1e-10)


def test_gradient_penalty_is_taken_at_the_interpolates():
    real, fake = torch.full((2, 3, 2, 2), 2.0), torch.zeros(2, 3, 2, 2)
    alpha = torch.tensor([0.5, 0.25]).view(2, 1, 1, 1)
    # critic 0.5 * |x|^2 has gradient x_hat = alpha * 2 per pixel: norms 1 * sqrt(12) and 0.5 * sqrt(12)
    penalty = gradient_penalty(lambda x: 0.5 * (x ** 2).sum(dim=(1, 2, 3)), real, fake, alpha)
    expected = ((math.sqrt(12) - 1) ** 2 + (0.5 * math.sqrt(12) - 1) ** 2) / 2
    assert penalty.item() == pytest.approx(expected, rel=1e-6)


def test_domain_label_plumbing():
    labels = torch.tensor([0, 1, 1, 2, 3])
    targets = shuffled_targets(labels, torch.Generator().manual_seed(0))
    assert sorted(targets.tolist()) == labels.tolist()  # the batch's own labels, reordered
    assert torch.equal(targets, shuffled_targets(labels, torch.Generator().manual_seed(0)))
    codes = one_hot(targets, 4)
    assert codes.shape == (5, 4) and torch.equal(codes.argmax(1), targets) and torch.equal(codes.sum(1), torch.ones(5))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        one_hot(labels, 3)


def tiny_pair(size=16, domains=3):
    torch.manual_seed(0)
    return Generator(domains, width=4, n_down=2, n_res=1), Discriminator(size, domains, width=4, n_layers=2)


def test_losses_have_every_part_and_reach_the_right_weights():
    G, D = tiny_pair()
    x, y = torch.rand(4, 3, 16, 16) * 2 - 1, torch.tensor([0, 1, 2, 0])
    t = torch.tensor([1, 2, 0, 0])
    loss, parts = critic_loss(G, D, x, y, t, torch.rand(4, 1, 1, 1), LossWeights())
    assert set(parts) == {"d_real", "d_fake", "d_cls", "d_gp"} and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is None for p in G.parameters())  # the critic's step never trains G
    D.requires_grad_(False)
    loss, parts = generator_loss(G, D, x, y, t, LossWeights(cls=0, rec=0))
    assert loss.item() == pytest.approx(parts["g_fake"])  # zero weights drop the other terms
    loss.backward()
    assert all(p.grad is not None for p in G.parameters())


def bank(n=12, size=16, domains=3):
    g = torch.Generator().manual_seed(1)
    return ImageBank(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
                     torch.arange(n) % domains)


def test_image_bank_draws_seeded_batches_and_checks_input():
    b = bank()
    x, y = b.sample(5, torch.Generator().manual_seed(3))
    x2, y2 = b.sample(5, torch.Generator().manual_seed(3))
    assert x.shape == (5, 3, 16, 16) and -1 <= x.min() and x.max() <= 1
    assert torch.equal(x, x2) and torch.equal(y, y2) and len(set(y.tolist())) > 1
    assert b.sample(20, torch.Generator())[0].shape[0] == 20  # more than the bank holds: with replacement
    with pytest.raises(ValueError, match="uint8"):
        ImageBank(torch.zeros(2, 3, 4, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="labels"):
        ImageBank(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3))


def test_training_logs_every_update():
    G, D = tiny_pair()
    history = train_stargan(G, D, bank(), TrainSettings(iterations=6, batch_size=4, n_critic=3))
    assert history.iterations == 6 and history.g_iteration == [2, 5] and len(history.g_rec) == 2
    assert history.trained_now == 6 and history.seconds > 0 and not G.training


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    settings = TrainSettings(iterations=7, batch_size=4, n_critic=2, seed=5)
    G, D = tiny_pair()
    straight = train_stargan(G, D, bank(), settings)

    class Interrupted(Exception):
        pass

    class FlakyBank(ImageBank):
        calls = 0

        def sample(self, batch_size, generator):
            FlakyBank.calls += 1
            if FlakyBank.calls == 6:  # the process dies during iteration 5
                raise Interrupted
            return super().sample(batch_size, generator)

    data = bank()
    ckpt = Checkpointer(tmp_path / "stargan.pt", every=2)
    G1, D1 = tiny_pair()
    with pytest.raises(Interrupted):
        train_stargan(G1, D1, FlakyBank(data.images, data.labels), settings, checkpoint=ckpt)
    assert ckpt.load()["iteration"] == 4
    G2, D2 = tiny_pair()  # a new process: fresh models, the same checkpoint
    resumed = train_stargan(G2, D2, data, settings, checkpoint=ckpt)
    assert resumed.resumed_at == [4] and resumed.trained_now == 3 and resumed.d_real == pytest.approx(straight.d_real)
    for a, b in zip(G.state_dict().values(), G2.state_dict().values()):
        torch.testing.assert_close(a, b)
    again = train_stargan(*tiny_pair(), data, settings, checkpoint=ckpt)  # finished: a load, no training
    assert again.trained_now == 0 and again.iterations == 7
    with pytest.raises(ValueError, match="past"):
        train_stargan(*tiny_pair(), data, TrainSettings(iterations=3, batch_size=4), checkpoint=ckpt)


class Painter(nn.Module):
    """A perfect toy translator: paints the whole image in its target domain's grey level."""

    num_classes = 2
    LEVELS = torch.tensor([-0.5, 0.5])

    def forward(self, x, code):
        return self.LEVELS[code.argmax(1)].view(-1, 1, 1, 1).expand_as(x).clone()


class MeanLevel(nn.Module):
    def forward(self, x):
        return x.mean(dim=(1, 2, 3)).unsqueeze(1)


def test_evaluation_of_a_perfect_translator():
    levels = torch.tensor([64, 191], dtype=torch.uint8)  # -0.5 and +0.5 after to_unit
    labels = torch.tensor([0, 1] * 4)
    images = levels[labels].view(-1, 1, 1, 1).expand(8, 3, 8, 8).clone()
    head = nn.Linear(1, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        head.bias.zero_()
    report = evaluate_translations(Painter(), images, labels, MeanLevel(), head, ("dark", "bright"), batch_size=3)
    assert report.real_accuracy.tolist() == [1.0, 1.0] and report.counts.tolist() == [4, 4]
    assert (report.target_accuracy == 1).all()
    assert report.off_diagonal_mean(report.cycle_l1) < 0.01
    summary = report.summary()
    assert summary["kid"] < summary["kid_untranslated"]
    with pytest.raises(ValueError, match="domain names"):
        evaluate_translations(Painter(), images, labels, MeanLevel(), head, ("a", "b", "c"))


def test_kid_separates_distributions():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(60, 8, generator=g), torch.randn(60, 8, generator=g)
    same, near, far = kid_score(a, b), kid_score(a, b + 0.5), kid_score(a, b + 3)
    assert same < near < far and far > 100 * abs(same)
    assert kid_score(a, b + 3) == far  # seeded subsets: the same value twice
    with pytest.raises(ValueError, match="at least 2"):
        kid_score(a[:1], b)


def test_every_domain_grid_and_uint8_round_trip():
    G, _ = tiny_pair()
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    grid = translate_to_every_domain(G, images)
    assert grid.shape == (2, 3, 3, 16, 16) and grid.dtype == torch.uint8
    assert torch.equal(to_uint8(images.float() / 127.5 - 1), images)


class ChannelStats(nn.Module):
    """A stand-in feature extractor for FID: per-channel mean and spread of uint8 images."""

    num_features = 6

    def forward(self, x):
        x = x.float() / 255
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], 1)


def test_fid_into_targets_rewards_translation_toward_the_target():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1] * 30)
    levels = torch.tensor([64.0, 191.0])[labels].view(-1, 1, 1, 1)
    noise = torch.randn(60, 3, 8, 8, generator=g) * 20
    images = (levels + noise).clamp(0, 255).to(torch.uint8)
    metric = FrechetInceptionDistance(feature=ChannelStats(), normalize=False)
    translated, untranslated = fid_into_targets(metric, Painter(), images, labels)
    assert translated.shape == untranslated.shape == (2,)
    assert (untranslated > 0.1).all()  # the other dish's photos are far from this dish's
    assert (translated < untranslated).all()  # painted in the target's grey level: closer in mean


def test_inception_fid_says_what_to_do_offline(monkeypatch):
    def offline(**kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(gan, "FrechetInceptionDistance", offline)
    with pytest.raises(RuntimeError, match="InceptionV3 weights.*internet"):
        inception_fid()


def test_resume_moves_both_networks_before_loading_optimizer_state(tmp_path, monkeypatch):
    from test_train import spy_on_resume

    settings = TrainSettings(iterations=4, batch_size=4, n_critic=2)
    ckpt = Checkpointer(tmp_path / "stargan.pt", every=2)
    train_stargan(*tiny_pair(), bank(), TrainSettings(iterations=2, batch_size=4, n_critic=2),
                  checkpoint=ckpt)
    G, D = tiny_pair()
    events = []
    spy_on_resume(monkeypatch, {"G": G, "D": D}, events)
    train_stargan(G, D, bank(), settings, checkpoint=ckpt)
    loaded = events.index("optimizer.load")
    assert events.index("G.to") < loaded and events.index("D.to") < loaded
