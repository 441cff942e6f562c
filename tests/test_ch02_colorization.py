import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from helpers.core.profiles import ProfileError
from helpers.data.frames import scan_frames
from helpers.models.colorizer import BinnedAB, L2Regression, VGGTaps
from helpers.studies import ch02_colorization as study

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def tiny_trunk(seed=0) -> VGGTaps:
    """A VGG-shaped trunk (conv, relu, pool) x 3, small enough for unit tests."""
    torch.manual_seed(seed)
    layers = []
    for c_in, c_out in ((3, 4), (4, 8), (8, 8)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    return VGGTaps(nn.Sequential(*layers), MEAN, STD, stages=3)


@pytest.fixture
def frames(tmp_path):
    """Twelve 24 x 16 frames: left half reddish, right half bluish, brightness rising with time."""
    folder = tmp_path / "clip"
    folder.mkdir()
    for k in range(12):
        image = np.zeros((16, 24, 3), np.uint8)
        image[:, :12] = (150 + 5 * k, 40, 40)
        image[:, 12:] = (40, 60, 150 + 5 * k)
        Image.fromarray(image).save(folder / f"frame_{k + 1}.png")
    return study.lab_frames(scan_frames(folder), range(12), 16)


def test_every_profile_has_settings():
    assert study.settings("smoke").size < study.settings("cpu").size < study.settings("gpu").size
    assert study.settings("gpu").full_clip and not study.settings("cpu").full_clip
    with pytest.raises(ProfileError):
        study.settings("laptop")


def test_seeded_subset_is_reproducible_and_time_ordered():
    picked = study.seeded_subset(np.arange(100), 10, seed=4)
    assert len(picked) == 10 and (np.diff(picked) > 0).all()
    assert (picked == study.seeded_subset(np.arange(100), 10, seed=4)).all()
    assert len(study.seeded_subset(np.arange(5), None, 0)) == 5


def test_lab_frames_hold_l_ab_and_rgb(frames):
    assert frames.lightness.shape == (12, 1, 16, 16) and frames.ab.shape == (12, 2, 16, 16)
    assert frames.rgb.shape == (12, 16, 16, 3)
    assert frames.ab[0, 0, :, 0].mean() > 0.3 and frames.ab[0, 1, :, -1].mean() < -0.3  # red left, blue right
    gray = frames.gray()
    assert gray.shape == (12, 3, 16, 16) and torch.equal(gray[:, 0], gray[:, 1])
    perfect = study.score(frames, frames.ab)
    assert perfect["ab_rmse"] == 0 and perfect["psnr_db"] > 40 and perfect["colourfulness_ratio"] == pytest.approx(1, abs=0.02)
    gray_score = study.score(frames, torch.zeros_like(frames.ab))
    assert gray_score["colourfulness"] < 1 and gray_score["ab_mae"] > 20


def test_taps_are_cached_per_trunk_and_pixels(frames, isolated):
    trunk = tiny_trunk()
    first, cached = study.cached_taps(trunk, frames, batch_size=5)
    assert not cached and [t.dtype for t in first] == [torch.float16] * 3
    assert [tuple(t.shape) for t in first] == [(12, 4, 8, 8), (12, 8, 4, 4), (12, 8, 2, 2)]
    again, cached = study.cached_taps(trunk, frames, batch_size=5)
    assert cached and all(torch.equal(a, b) for a, b in zip(first, again))
    _, cached = study.cached_taps(tiny_trunk(seed=1), frames, batch_size=5)
    assert not cached  # other weights, other features


def test_training_lowers_the_loss_and_records_curves(frames, isolated):
    taps, _ = study.cached_taps(tiny_trunk(), frames, batch_size=6)
    config = dataclasses.replace(study.settings("smoke"), epochs=4, batch_size=4, lr=1e-2)
    trained = study.train_experiment(study.EXPERIMENTS[0], {"pretrained": (taps, taps)}, frames, frames, config, seed=0)
    curve = trained.curve
    assert len(curve.train_loss) == len(curve.test_rmse) == len(curve.seconds) == 4
    assert curve.train_loss[-1] < curve.train_loss[0]
    ab = study.colorize(trained.head, trained.objective, taps, (16, 16), batch_size=5)
    assert ab.shape == frames.ab.shape and not trained.head.training


def test_every_experiment_builds_and_bad_names_are_errors(frames):
    channels = (4, 8, 8)
    for experiment in study.EXPERIMENTS:
        objective = study.build_objective(experiment, frames.ab)
        head = study.build_head(experiment, channels, objective.out_channels)
        assert isinstance(objective, BinnedAB if experiment.objective == "bins" else L2Regression)
        assert study.parameter_count(head) > 0
    with pytest.raises(ValueError, match="unknown head"):
        study.build_head(study.Experiment("x", "unet"), channels, 2)
    with pytest.raises(ValueError, match="unknown objective"):
        study.build_objective(study.Experiment("x", "residual", objective="gan"), frames.ab)


def test_hypercolumn_keeps_more_for_backward_than_the_residual_encoder(frames):
    taps = tiny_trunk()(frames.gray())
    heads = {v.head: study.build_head(v, (4, 8, 8), 2) for v in study.EXPERIMENTS[:3]}
    memory = {name: study.saved_activation_mib(h, L2Regression(), taps, frames.ab) for name, h in heads.items()}
    assert memory["hypercolumn"] > memory["residual"] > 0
    assert study.forward_ms(heads["residual"], taps, min_run_time=0.01) > 0


def table_and_curves(hyper_slower: bool):
    base = {"saved_mib_per_image": 1.0, "head_ms_per_image": 2.0, "train_s_per_epoch": 3.0, "ab_rmse": 10.0, "psnr_db": 25.0}
    hyper = {k: v * (2 if hyper_slower else 0.5) for k, v in base.items()}
    last = dict(base, ab_rmse=12.0)
    table = {"residual (fixed)": base, "hypercolumn": hyper, "last layer, no shortcut": last}
    curves = {"residual (fixed)": study.Curve(train_loss=[0.2, 0.1]), "last layer, no shortcut": study.Curve(train_loss=[0.3, 0.2])}
    return table, curves


def test_claim_verdicts_follow_the_measurements():
    table, curves = table_and_curves(hyper_slower=True)
    verdicts = {c.id: c.verdict for c in study.claims(table, curves)}
    assert set(verdicts.values()) == {"reproduced"} and len(verdicts) == 3
    table, curves = table_and_curves(hyper_slower=False)
    curves["last layer, no shortcut"] = curves["residual (fixed)"]
    verdicts = {c.id: c.verdict for c in study.claims(table, curves)}
    assert verdicts == {"02-lighter-faster": "differs", "02-more-accurate": "differs",
                        "02-no-shortcut-slower-worse": "differs"}


def test_evaluating_the_faithful_head_leaves_it_untouched(frames, isolated):
    taps, _ = study.cached_taps(tiny_trunk(), frames, batch_size=6)
    config = dataclasses.replace(study.settings("smoke"), epochs=1, batch_size=4)
    faithful = study.EXPERIMENTS[1]
    assert faithful.bugs.batchnorm_train_at_test
    trained = study.train_experiment(faithful, {"pretrained": (taps, taps)}, frames, frames, config, seed=0)
    before = {k: v.clone() for k, v in trained.head.state_dict().items()}
    as_run, _ = study.evaluate(trained, taps, frames, batch_size=4)
    in_eval_mode, _ = study.evaluate(trained, taps, frames, batch_size=4, batchnorm_train_at_test=False)
    assert all(torch.equal(before[k], v) for k, v in trained.head.state_dict().items())
    assert trained.head.bugs.batchnorm_train_at_test  # the switch applies to the evaluated copy only
    assert not torch.equal(as_run, in_eval_mode)


def test_recolour_pairs_each_frame_with_its_own_prediction(frames):
    picked = np.array([0, 5, 11])
    subset = frames.subset(picked)
    assert list(subset.indices) == [0, 5, 11] and torch.equal(subset.ab, frames.ab[picked])
    assert np.array_equal(study.recolour(subset, frames.ab[picked]), frames.rgb[picked])  # Lab round trip is exact
    with pytest.raises(ValueError, match="3 ab predictions for 12 frames"):
        study.recolour(frames, frames.ab[picked])  # the old gallery's mistake: L of frames 0-2, ab of 0, 5, 11


def test_the_trunks_of_the_smoke_profile():
    trunks, records = study.build_trunks("smoke", seed=0)
    assert set(trunks) == {"pretrained", "random", "vgg16"}
    assert records["pretrained"].arch == "efficientnet_lite0" and records["pretrained"].weights == "imagenet"
    assert records["random"].weights == "random" and records["vgg16"].arch.startswith("vgg")
    taps = trunks["pretrained"](torch.rand(1, 3, 32, 32))
    assert [t.shape[-1] for t in taps] == [16, 8, 4, 2] and list(trunks["pretrained"].channels) == [16, 24, 40, 112]
    assert [v.name for v in study.experiments_for({"pretrained": 0, "random": 0})] == [
        v.name for v in study.EXPERIMENTS if v.trunk != "vgg16"]
