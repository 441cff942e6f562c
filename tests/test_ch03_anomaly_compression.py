import dataclasses
import time

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from sklearn.metrics import roc_auc_score

from helpers.core import verdicts
from helpers.core.profiles import ProfileError
from helpers.methods.mask import OtsuMasker
from helpers.models.padim import Padim
from helpers.studies import ch03_anomaly_compression as study


def test_every_profile_has_settings_and_the_sweep_reaches_maximum_compression():
    for profile in ("smoke", "cpu", "gpu"):
        s = study.settings(profile)
        assert s.hevc_crfs[-1] == 51 and max(s.av1_crfs) <= 63
        runs = study.plan(s)
        assert {(p, "hevc", 51) for p in study.PREPROCESSINGS} <= set(runs)
        assert runs[0] == ("none", "png", None)  # the baseline first: its test features are reused
    assert study.settings("gpu").backbone == "wide_resnet50_2" and study.settings("gpu").full_data
    with pytest.raises(ProfileError):
        study.settings("laptop")


def test_seeded_sample_keeps_both_classes_and_is_repeatable():
    labels = np.array([0] * 41 + [1] * 119)
    pick = study.seeded_sample(labels, 24, seed=0)
    assert len(pick) == 24 and 0 < labels[pick].sum() < 24
    assert np.array_equal(pick, study.seeded_sample(labels, 24, seed=0))
    assert not np.array_equal(pick, study.seeded_sample(labels, 24, seed=1))
    assert np.array_equal(study.seeded_sample(labels, None, 0), np.arange(160))


def screws(n, seed):
    """Dark textured rods at random angles and positions on a light background (512 px is not needed)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, 128, 128), np.uint8)
    texture = cv2.GaussianBlur(rng.integers(0, 120, (128, 128)).astype(np.uint8), (3, 3), 0)
    rod = np.full((128, 128), 200, np.uint8)
    cv2.rectangle(rod, (34, 56), (94, 72), 0, -1)
    rod = np.where(rod == 0, texture, rod).astype(np.uint8)
    cv2.circle(rod, (34, 64), 12, 30, -1)
    cv2.circle(rod, (34, 64), 4, 150, -1)
    for i in range(n):
        matrix = cv2.getRotationMatrix2D((64, 64), float(rng.uniform(-40, 40)), 1.0)
        matrix[:, 2] += rng.uniform(-6, 6, 2)
        out[i] = cv2.warpAffine(rod, matrix, (128, 128), borderValue=200)
    return np.clip(out.astype(int) + rng.integers(-4, 5, out.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def small_study():
    train, test = screws(10, seed=0), screws(6, seed=1)
    truth = np.zeros(test.shape, bool)
    labels = np.array([0, 0, 0, 1, 1, 1])
    for i in (3, 4, 5):
        cv2.circle(test[i], (70, 60), 5, 255, -1)
        truth[i] = cv2.circle(np.zeros((128, 128), np.uint8), (70, 60), 5, 1, -1) > 0
    timer = study.Timer()
    preparation = study.prepare(train, test, truth, OtsuMasker(), timer)
    return preparation, labels, timer


def test_prepare_builds_the_four_sets_with_moved_ground_truth(small_study):
    preparation, _, timer = small_study
    assert list(preparation.sets) == list(study.PREPROCESSINGS)
    for prepared in preparation.sets.values():
        assert prepared.train.shape == (10, 128, 128) and prepared.ground_truth.shape == (6, 128, 128)
    assert sum(a.aligned for a in preparation.train_alignments) >= 8  # the reference aligns to itself, at least
    assert preparation.train_alignments[0].aligned
    # the OR-ed mask of aligned images is tighter than that of unaligned ones, and pixels outside are filled
    assert preparation.masks["align+mask"].sum() <= preparation.masks["mask"].sum()
    masked = preparation.sets["align+mask"].train
    assert (masked[:, ~preparation.masks["align+mask"]] == 0).all()
    assert preparation.sets["align"].ground_truth.sum() > 0
    assert set(timer.table().index) >= {"AKAZE alignment + warp", "foreground mask (otsu)"}


def test_store_records_size_fidelity_and_settings():
    images = screws(4, seed=3)
    s = study.settings("smoke")
    png, decoded = study.store(images, "none", "png", None, s)
    assert png.psnr_db == np.inf and np.array_equal(decoded, images) and png.size_bytes > 0
    hevc, decoded = study.store(images, "none", "hevc", 20, s)
    assert decoded.shape == images.shape and 30 < hevc.psnr_db < np.inf
    assert hevc.setting == "libx265 crf=20 preset=ultrafast gray"
    webp, decoded = study.store(images, "none", "webp", 50, s)
    assert decoded.shape == images.shape and "quality=50" in webp.setting


def test_the_sweep_runs_every_planned_stored_set(small_study):
    preparation, labels, timer = small_study
    s = dataclasses.replace(study.settings("smoke"), resize=40, crop=32, hevc_crfs=(30, 51), av1_crfs=(63,),
                            image_qualities=(50,))
    torch.manual_seed(0)
    padim = Padim(torchvision.models.resnet18().eval(), dims=20, resize=40, crop=32, batch_size=8)
    sweep = study.Sweep(padim, preparation, labels, s, timer)
    row, maps = sweep.run("none", "png", None)
    assert maps.shape == (6, 32, 32) and row["image_auc"] == roc_auc_score(labels, row["image_scores"])
    assert row["pixel_auc"] > 0.6  # the maps light up on the bright spots more than elsewhere
    frame = sweep.run_all()
    assert len(frame) == len(study.plan(s)) and not frame.duplicated(["preprocessing", "codec", "level"]).any()
    table = study.table1(frame)
    assert list(table.index) == list(range(9)) and table.loc[1, "ratio_percent"] == pytest.approx(100)
    assert "crf=30" in table.loc[1, "setting"] and "crf=51" in table.loc[8, "setting"]


def fake_sweep(size, image, pixel):
    """A made-up sweep: ``size[prep][level]``, AUCs likewise (level None is PNG)."""
    rows = []
    for prep in study.PREPROCESSINGS:
        for level in (None, 20, 30, 51):
            codec = "png" if level is None else "hevc"
            rows.append({"preprocessing": prep, "codec": codec, "level": level, "setting": f"{codec} {level}",
                         "size_bytes": size[prep][level], "size_kb": size[prep][level] / 1000,
                         "psnr_db": np.inf if level is None else 60 - level / 2,
                         "image_auc": image[prep][level], "pixel_auc": pixel[prep][level],
                         "image_scores": np.array([0.1, 0.2, 0.9, 0.8])})
    return pd.DataFrame(rows)


def paper_like_sweep():
    scale = {"none": 1.0, "align": 0.94, "mask": 1.1, "align+mask": 0.82}
    size = {p: {None: 40e6, 20: 4e6 * k, 30: 2e6 * k, 51: 0.2e6 * k} for p, k in scale.items()}
    image = {"none": {None: 0.84, 20: 0.80, 30: 0.845, 51: 0.68}, "align": {None: 0.95, 20: 0.95, 30: 0.94, 51: 0.63},
             "mask": {None: 0.7, 20: 0.66, 30: 0.65, 51: 0.62}, "align+mask": {None: 0.98, 20: 0.98, 30: 0.98, 51: 0.93}}
    pixel = {p: {lvl: 0.98 if p != "mask" else 0.96 for lvl in (None, 20, 30, 51)} for p in scale}
    return fake_sweep(size, image, pixel)


def test_matched_crf_table1_and_claims_on_a_paper_like_sweep():
    sweep = paper_like_sweep()
    assert study.matched_crf(sweep) == 30  # nearest the PNG AUCs; 51 is never 'matched'
    table = study.table1(sweep)
    assert table.loc[7, "ratio_percent"] == pytest.approx(82)
    assert table.loc[0, "paper_image_auc"] == 0.844 and np.isnan(table.loc[2, "paper_size_kb"])
    claims = {c.id: c for c in study.claims(table, np.array([0, 0, 1, 1]), paper_backbone=False, why_setup="test")}
    assert claims["03-smallest"].verdict == "reproduced"
    assert claims["03-max-keeps-auc"].verdict == "reproduced"
    assert claims["03-align-raises-auc"].verdict == "reproduced"
    assert claims["03-t1-r0-image-auc"].verdict == "not comparable"  # another backbone: only changes compare
    assert claims["03-t1-r3-ratio"].verdict == "reproduced" and claims["03-t1-r1-size"].verdict == "not comparable"
    assert claims["03-t1-r5-image-auc"].verdict == "reproduced"  # both below their PNG baseline
    assert len([c for c in claims if c.startswith("03-t1-")]) == 9 * 2 + 5 + 8  # AUCs, sizes, ratios


def test_claims_can_differ_and_the_paper_backbone_compares_absolute_values():
    sweep = paper_like_sweep()
    sweep.loc[(sweep.preprocessing == "align") & (sweep.level == 30), "image_auc"] = 0.80  # alignment hurts
    table = study.table1(sweep)
    claims = {c.id: c for c in study.claims(table, np.array([0, 0, 1, 1]), paper_backbone=True, why_setup="t")}
    assert claims["03-align-raises-auc"].verdict == "differs"
    assert claims["03-t1-r0-pixel-auc"].verdict == "reproduced"  # 0.98 is within 0.005 of the paper's 0.983
    assert claims["03-t1-r0-image-auc"].verdict == "differs"  # these scores separate perfectly: AUC 1, CI [1, 1]
    sweep.loc[(sweep.preprocessing == "none") & (sweep.codec == "png"), "pixel_auc"] = 0.97
    table = study.table1(sweep)
    claims = {c.id: c for c in study.claims(table, np.array([0, 0, 1, 1]), paper_backbone=True, why_setup="t")}
    assert claims["03-t1-r0-pixel-auc"].verdict == "differs"


def test_rate_summaries():
    sweep = paper_like_sweep()
    bd = study.bd_rates(sweep).set_index("preprocessing")["BD-rate vs HEVC-only (%)"]
    assert bd["align+mask"] == pytest.approx(-18) and bd["mask"] == pytest.approx(10)
    best = study.smallest_keeping_auc(sweep, tolerance=0.01).set_index("preprocessing")
    assert best.loc["align+mask", "size_kb"] == pytest.approx(0.2e6 * 0.82 / 1000)  # CRF 51 keeps the AUC
    assert best.loc["none", "setting"] == "hevc 30"
    labels = np.array([0, 1] * 20)
    assert study.bootstrap_ci(labels, labels + 0.1 * np.arange(40) / 40) == pytest.approx((1.0, 1.0))  # separated
    low, high = study.bootstrap_ci(labels, np.random.default_rng(0).normal(size=40))  # a detector that guesses
    assert low < 0.5 < high and high - low > 0.2


def test_bootstrap_interval_holds_the_auc_and_narrows_with_more_images():
    def noisy(n):
        labels = np.array([0, 1] * (n // 2))
        return labels, labels + np.random.default_rng(0).normal(size=n)  # the same detector, n test images

    widths = []
    for n in (40, 400):
        labels, scores = noisy(n)
        low, high = study.bootstrap_ci(labels, scores)
        assert low < roc_auc_score(labels, scores) < high
        assert (low, high) == study.bootstrap_ci(labels, scores)  # seeded: repeatable
        widths.append(high - low)
    assert widths[1] < 0.6 * widths[0]  # ten times the images: half the width here (0.09 vs 0.17)


def test_a_baseline_near_chance_makes_the_change_claims_not_comparable():
    sweep = paper_like_sweep()
    table = study.table1(sweep)
    labels = np.array([0, 1] * 20)
    guessing = np.random.default_rng(1).normal(size=40)
    table.at[0, "image_scores"] = guessing
    claims = {c.id: c for c in study.claims(table, labels, paper_backbone=False, why_setup="t")}
    assert verdicts.interval_side(*study.bootstrap_ci(labels, guessing), study.CHANCE_AUC) == "straddles"
    for flipped in ("03-t1-r5-image-auc", "03-max-keeps-auc", "03-align-raises-auc"):
        assert claims[flipped].verdict == "not comparable" and "reaches chance" in claims[flipped].why
    assert claims["03-smallest"].verdict == "reproduced"  # sizes do not rest on the detector
    table.at[0, "image_scores"] = labels + 0.01 * np.arange(40)  # a detector that separates: verdicts return
    claims = {c.id: c for c in study.claims(table, labels, paper_backbone=False, why_setup="t")}
    assert claims["03-t1-r5-image-auc"].verdict == "reproduced"


def test_the_resolution_sweep_and_the_crop_rule():
    assert study.resize_for(224) == 256 and study.resize_for(288) == 329
    sweep = pd.DataFrame({"crop": [224, 288, 352], "image_auc": [0.80, 0.815, 0.79]})
    assert study.choose_crop(sweep) == 224  # within 0.02 of the best: the cheaper crop
    assert study.choose_crop(sweep, tolerance=0.01) == 288


def test_peak_memory_sees_an_allocation():
    with study.PeakMemory() as memory:
        block = np.ones(256 * 2**20 // 8)  # 256 MiB of fresh pages (more than an allocator keeps), a few samples
        time.sleep(0.2)
        del block
    assert memory.peak_mib >= memory.start_mib + 32


def test_resolution_sweep_fits_one_baseline_per_crop():
    rng = np.random.default_rng(0)
    train = rng.integers(100, 140, (6, 48, 48)).astype(np.uint8)
    test = rng.integers(100, 140, (4, 48, 48)).astype(np.uint8)
    truth = np.zeros((4, 48, 48), bool)
    test[2:, 10:20, 10:20], truth[2:, 10:20, 10:20] = 255, True
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18().eval()
    made = []

    def make(resize, crop):
        made.append((resize, crop))
        return Padim(resnet, dims=16, resize=resize, crop=crop, batch_size=4)

    frame = study.resolution_sweep(make, train, test, truth, np.array([0, 0, 1, 1]), (32, 40))
    assert made == [(37, 32), (46, 40)] and list(frame.crop) == [32, 40]
    assert list(frame.grid) == ["8x8", "10x10"]
    assert ((frame.image_auc_low <= frame.image_auc) & (frame.image_auc <= frame.image_auc_high)).all()
    assert (frame.image_auc == 1).all() and (frame.pixel_auc > 0.9).all() and (frame.fit_s > 0).all()


def test_the_benchmark_record_becomes_a_table_and_a_figure(tmp_path):
    import json

    with pytest.raises(FileNotFoundError, match="padim_compare.py"):
        study.load_benchmark(tmp_path)
    rows = [{"implementation": name, "crop": 224, "dims": 100, "fit_s": 8.0, "infer_s": 3.0, "backbone_s": 8.5,
             "padim_s": 2.5, "peak_rss_above_baseline_mib": 800.0, "image_auc": 0.77, "pixel_auc": 0.94,
             "status": "ok"} for name in ("book", "anomalib")]
    rows.append({"implementation": "reference", "crop": 448, "dims": 100, "status": "skipped"})
    (tmp_path / study.BENCHMARK_FILE).write_text(json.dumps({"rows": rows}))
    table = study.benchmark_table(study.load_benchmark(tmp_path))
    assert list(table["implementation"]) == ["book", "anomalib"] and "PaDiM s" in table.columns
    assert len(study.plot_benchmark(table).axes) == 1


def baseline_like(crop, image, pixel):
    """A made-up ``baseline_run`` result (the keys it returns)."""
    return {"crop": crop, "resize": study.resize_for(crop), "grid": "8x8", "image_auc": image,
            "image_auc_low": image - 0.1, "image_auc_high": min(image + 0.1, 1.0), "pixel_auc": pixel,
            "fit_s": crop / 100, "score_s": 0.5}


def test_chapter_metrics_are_built_from_the_chapter_measurements_with_the_reference_keys():
    from conftest import ROOT

    from helpers.core import regression
    from helpers.methods.align import Alignment, summary

    sweep = paper_like_sweep()
    table = study.table1(sweep)
    identity = np.eye(2, 3)
    alignments = [Alignment(identity, 30, 20, True)] * 3 + [Alignment(identity, 2, 0, False, "too few matches")]
    resolution = pd.DataFrame([baseline_like(224, 0.84, 0.98), baseline_like(288, 0.83, 0.97)])
    timer = study.Timer()
    timer.add("PaDiM fit (train features + Gaussians)", 3.0, 10)
    metrics = study.chapter_metrics(
        baseline=sweep.iloc[0].to_dict(), baseline_interval=(0.7, 0.95), crop=224, resolution=resolution,
        random_weights=baseline_like(224, 0.55, 0.7), alignment={"train": summary(alignments), "test": summary([])},
        padim_s=12.5, peak_mib=2048.0, table=table, sweep=sweep, seconds=timer.seconds)

    # the names the smoke reference (tests/notebooks/03.smoke-reference.json) compares are all there
    reference = regression.load_reference(ROOT / "tests" / "notebooks" / "03.smoke-reference.json")
    compared = {name for name in regression.flatten(metrics)
                if not regression.rule_for(name, reference["tolerances"]).get("skip")}
    assert {n.split(".")[0] for n in compared} == {n.split(".")[0] for n in reference["metrics"]}
    assert {n for n in compared if n.startswith("table1.")} == {n for n in reference["metrics"]
                                                               if n.startswith("table1.")}
    assert {n.split(".", 2)[2] for n in compared if n.startswith("resolution_sweep.")} == {"image_auc", "pixel_auc"}
    assert {"padim_fit_eval_s", "padim_peak_rss_mib", "seconds_per_stage"} <= set(metrics)  # kept, not compared

    assert metrics["baseline_image_auc"] == 0.84 and metrics["baseline_image_auc_interval"] == [0.7, 0.95]
    assert list(metrics["resolution_sweep"]) == [224, 288] and metrics["resolution_sweep"][288]["fit_s"] == 2.88
    assert metrics["random_weights_pixel_auc"] == 0.7 and metrics["matched_crf"] == 30
    assert metrics["train_aligned_fraction"] == 0.75 and metrics["test_aligned_fraction"] == 0.0
    assert list(metrics["table1"]) == list(range(9)) and metrics["table1"][7]["ratio_percent"] == pytest.approx(82)
    assert metrics["table1"][1]["setting"] == "hevc 30"
    assert metrics["bd_rate_percent"]["align+mask hevc"] == pytest.approx(-18)
    assert len(metrics["sweep"]) == len(sweep) and "image_scores" not in metrics["sweep"][0]
    assert metrics["seconds_per_stage"] == {"PaDiM fit (train features + Gaussians)": 3.0}
    with pytest.raises(TypeError):
        study.chapter_metrics(sweep)  # keyword-only: eleven measurements are not passed by position
