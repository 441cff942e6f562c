from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers.core.profiles import ProfileError
from helpers.data.food import load_food
from helpers.studies import ch04_food_stargan as study


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_profile_sizes_fit_the_networks(profile):
    cfg = study.settings(profile)
    assert cfg.clean_domain in cfg.domains and len(set(cfg.domains)) == len(cfg.domains) >= 2
    assert cfg.image_size % 2 ** cfg.d_layers == 0 and cfg.image_size % 4 == 0 and cfg.test_size % 4 == 0
    assert cfg.test_size > cfg.image_size and max(cfg.fractions) == 1.0
    assert 2 * cfg.k_clusters <= cfg.train_per_class and cfg.iterations >= cfg.n_critic
    assert set(cfg.table().index) >= {"image_size", "iterations", "g_width"}


def test_the_gpu_profile_keeps_the_studys_network():
    gpu, cpu = study.settings("gpu"), study.settings("cpu")
    assert (gpu.image_size, gpu.test_size, gpu.batch_size, gpu.g_width, gpu.g_res_blocks) == (256, 512, 32, 64, 6)
    assert gpu.n_critic == 5 and gpu.k_clusters == 8 and gpu.clean_domain == "ramen" and len(gpu.domains) == 10
    assert cpu.image_size == 64 and cpu.g_width < gpu.g_width
    with pytest.raises(ProfileError):
        study.settings("laptop")


def test_scale_comparison_counts_flops():
    cpu = study.settings("cpu")
    table = study.scale_comparison(cpu, study.settings("gpu"), train_images=400)
    assert table.loc["G GFLOPs per image", "ratio"] < 0.01  # shrunken net at a quarter of the resolution
    assert table.loc["images seen in training", "this run"] == cpu.iterations * cpu.batch_size
    assert (table["the study"] > 0).all()


def test_judge_starts_from_imagenet_weights_and_takes_any_size():
    model, record = study.judge_backbone("smoke", trainable=False)
    assert record.weights == "imagenet" and record.arch == study.JUDGE_BACKBONE
    judge = study.DishJudge(model, record, 3, size=32).eval()
    assert judge(torch.zeros(2, 3, 16, 16)).shape == judge(torch.zeros(2, 3, 48, 48)).shape == (2, 3)
    assert judge.features(torch.zeros(1, 3, 16, 16)).shape == (1, model.num_features)
    # the KID tap is the frozen ImageNet network: the same features the judge started from
    tap, _ = study.kid_features(replace(study.settings("smoke"), judge_size=32), "smoke")
    x = torch.rand(2, 3, 24, 24) * 2 - 1
    torch.testing.assert_close(tap(x), judge.features(x))
    assert not any(p.requires_grad for p in tap.parameters())


def test_unrelated_ssim_floor():
    same = torch.full((4, 3, 16, 16), 90, dtype=torch.uint8)
    assert study.unrelated_ssim(same) == pytest.approx(1.0)
    noise = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert study.unrelated_ssim(noise) < 0.2


def _summary(acc, kid, kid0=1.0, ssim=0.8, l1=0.05, worst=None):
    return {"target_accuracy": acc, "worst_target_accuracy": acc if worst is None else worst, "kid": kid,
            "kid_untranslated": kid0, "structure_ssim": ssim, "cycle_l1": l1}


def test_claim_verdicts_follow_the_measurements():
    cfg = study.settings("cpu")
    scale = study.scale_comparison(cfg, study.settings("gpu"), 400)
    curve = pd.DataFrame({0.25: {**_summary(0.4, 0.5), "photos": 100}, 1.0: {**_summary(0.7, 0.2), "photos": 400}}).T
    effect = {"spread_before": 0.5, "spread_after": 0.4, "removed": 12, "cleaned_target_accuracy": 0.8,
              "uncleaned_target_accuracy": 0.6, "cleaned_kid": 0.1, "uncleaned_kid": 0.2}
    good = study.claims(cfg, _summary(0.7, 0.2), _summary(0.65, 0.3), curve, 0.1, effect, scale)
    assert [c.verdict for c in good] == ["reproduced"] * 5 + ["not comparable"]
    bad_curve = curve.iloc[::-1].set_axis(curve.index)  # the small share did better
    worse = {**effect, "cleaned_kid": 0.3}
    bad = study.claims(cfg, _summary(0.3, 0.2), _summary(0.1, 0.3), bad_curve, 0.1, worse, scale)
    verdicts = {c.id: c.verdict for c in bad}
    assert verdicts == {"04-translate": "differs", "04-structure": "reproduced", "04-resolution": "differs",
                        "04-data-size": "not comparable", "04-cleaning": "not comparable", "04-scale": "not comparable"}
    # a GAN that translates, but the small share and the uncleaned set did better
    mixed = {c.id: c.verdict for c in study.claims(cfg, _summary(0.7, 0.2), _summary(0.65, 0.3), bad_curve, 0.1, worse,
                                                   scale)}
    assert mixed["04-data-size"] == mixed["04-cleaning"] == "differs"
    low_ssim = study.claims(cfg, _summary(0.7, 0.2, ssim=0.5), _summary(0.7, 0.2), curve, 0.1, effect, scale)
    assert low_ssim[1].verdict == "differs"  # 0.5 is below the midpoint 0.55 between 0.1 and 1


def test_a_dish_at_chance_or_a_gap_within_noise_is_not_evidence():
    cfg = study.settings("cpu")  # 4 dishes, 40 test photos each: 120 translations into a dish
    scale = study.scale_comparison(cfg, study.settings("gpu"), 400)
    curve = pd.DataFrame({0.25: {**_summary(0.4, 0.5), "photos": 100}, 1.0: {**_summary(0.7, 0.2), "photos": 400}}).T
    effect = {"spread_before": 0.5, "spread_after": 0.4, "removed": 12, "cleaned_target_accuracy": 0.8,
              "uncleaned_target_accuracy": 0.6, "cleaned_kid": 0.1, "uncleaned_kid": 0.2}
    one_dish_missed = study.claims(cfg, _summary(0.7, 0.2, worst=0.3), _summary(0.65, 0.3), curve, 0.1, effect, scale)
    verdicts = {c.id: c.verdict for c in one_dish_missed}
    assert verdicts["04-translate"] == "differs" and "not above chance" in one_dish_missed[0].why
    assert verdicts["04-data-size"] == verdicts["04-cleaning"] == "not comparable"
    close = {**effect, "cleaned_target_accuracy": 0.98, "uncleaned_target_accuracy": 0.975}  # 98 % vs 98 %
    tie = {c.id: c for c in study.claims(cfg, _summary(0.7, 0.2), _summary(0.65, 0.3), curve, 0.1, close, scale)}
    assert tie["04-cleaning"].verdict == "not comparable" and "differ by less" in tie["04-cleaning"].why
    assert tie["04-data-size"].verdict == "reproduced"  # 40 % -> 70 % on 480 translations each is beyond noise


@pytest.fixture
def tiny_food(tmp_path):
    """Two dishes (dark and bright photos), 8 train and 3 test photos each, in split folders."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 3)):
        for dish, level in (("dark_dish", 60), ("bright_dish", 190)):
            (tmp_path / split / dish).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(level + rng.normal(0, 20, (20, 24, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / dish / f"{i}.png")
    return tmp_path


def tiny_data(root, cfg):
    train = load_food("train", cfg.domains, root=root)
    location = train.location
    test = load_food("test", cfg.domains, root=root)
    x = lambda s, size: study.square_tensor(s, size)  # noqa: E731
    return study.FoodData(train, test, location, x(train, cfg.image_size), x(test, cfg.image_size),
                          x(test, cfg.test_size))


def test_runs_are_checkpointed_evaluated_and_subsets_nested(tiny_food, isolated):
    cfg = replace(study.settings("smoke"), domains=("dark_dish", "bright_dish"), clean_domain="dark_dish",
                  image_size=16, test_size=32, d_layers=2, iterations=5, k_clusters=2, judge_epochs=1, kid_subsets=3)
    data = tiny_data(tiny_food, cfg)
    quarter, half = (study.fraction_indices(data, np.arange(16), f) for f in (0.25, 0.5))
    assert len(quarter) == 4 and len(half) == 8 and set(quarter) <= set(half)
    assert np.bincount(data.train.labels[quarter]).tolist() == [2, 2]
    run = study.train_run(cfg, "tiny", data.train_x, data.train_y)
    assert run.history.trained_now == 5 and run.train_images == 16
    again = study.train_run(cfg, "tiny", data.train_x, data.train_y)  # finished checkpoint: loaded
    assert again.history.trained_now == 0
    for a, b in zip(run.G.parameters(), again.G.parameters()):
        torch.testing.assert_close(a, b)
    cfg = replace(cfg, judge_size=32)
    judge = study.train_judge(cfg, data, "smoke")
    assert not judge.was_cached and judge.history.epochs == 1 and study.train_judge(cfg, data, "smoke").was_cached
    assert judge.record.weights == "imagenet"
    kid_tap, _ = study.kid_features(cfg, "smoke")
    report = study.evaluate(cfg, run, judge.model, kid_tap, data.test_x_large, data.test_y)
    assert report.size == 32 and report.target_accuracy.shape == (2, 2) and report.counts.tolist() == [3, 3]
    assert study.grid_indices(data.test_y, 2).tolist() == [0, 1, 3, 4]
