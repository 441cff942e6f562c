import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers.core.profiles import ProfileError
from helpers.studies import ch05_jpeg_robustness as study


def test_every_profile_has_settings_and_unknown_ones_fail():
    cpu = study.settings("cpu").classify
    assert cpu.image_size < cpu.store_size < cpu.compress_size  # JPEG happens before the shrink to store_size
    assert study.settings("gpu").classify.compress_size is None
    assert study.settings("gpu").classify.epochs == 35 and not study.settings("gpu").classify.equal_updates
    with pytest.raises(ProfileError):
        study.settings("laptop")


def test_conditions_match_the_paper_columns():
    columns = list(study.paper_table("004_table2_top1", ["imagenet_train"]).columns)
    assert columns == list(study.CONDITIONS)
    sd = study.paper_sd_table("004_table1_psnr_ssim", ["metric"])
    assert sd.loc["PSNR [dB]", "80"] == pytest.approx(3.08)


def test_per_class_subset_is_seeded_and_balanced():
    labels = np.repeat(np.arange(3), 10)
    a, b = study.per_class_subset(labels, 4, seed=1), study.per_class_subset(labels, 4, seed=1)
    assert np.array_equal(a, b) and np.bincount(labels[a]).tolist() == [4, 4, 4]
    assert not np.array_equal(a, study.per_class_subset(labels, 4, seed=2))
    assert len(study.per_class_subset(labels, None, 0)) == 30
    with pytest.raises(ValueError, match="fewer"):
        study.per_class_subset(labels, 11, 0)


def test_mixes_make_the_copies_they_name():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    assert not study.MIXES["orig"].has_copies
    with pytest.raises(ValueError, match="adds no copies"):
        study.MIXES["orig"].copy_of(image)
    twice = np.asarray(study.MIXES["orig+2"].copy_of(image))
    once = np.asarray(study.MIXES["orig+2 once"].copy_of(image))
    assert not np.array_equal(twice, once)
    assert study.MIXES["orig+random"].copy_of(image, 5).size == image.size


def test_shrink_resizes_the_short_side_only_when_asked():
    image = Image.new("RGB", (80, 40))
    assert study.shrink(image, None) is image
    assert study.shrink(image, 20).size == (40, 20)


def test_seeded_pick_is_seeded_sorted_and_checked():
    a = study.seeded_pick(50, 10, seed=3)
    assert np.array_equal(a, study.seeded_pick(50, 10, seed=3)) and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, study.seeded_pick(50, 10, seed=4))
    assert np.array_equal(study.seeded_pick(5, None, 0), np.arange(5))
    with pytest.raises(ValueError, match="cannot pick"):
        study.seeded_pick(5, 6, 0)


def test_square_crops_any_aspect_ratio():
    out = study.square(Image.new("RGB", (40, 20), (10, 20, 30)), 8)
    assert out.shape == (3, 8, 8) and out.dtype == torch.uint8 and int(out[2, 0, 0]) == 30


def fake_correct():
    rng = np.random.default_rng(0)
    n = 200
    correct = {}
    for mix, p_low in (("orig", 0.1), ("orig+22", 0.3), ("orig+10", 0.4), ("orig+7", 0.5), ("orig+2", 0.7)):
        correct[mix] = {c: rng.random(n) < (0.8 if c not in ("3", "2") else p_low) for c in study.CONDITIONS}
    return correct


def test_accuracy_table_and_paired_gain():
    correct = fake_correct()
    resamples = study.bootstrap_indices(200, 300)
    table = study.accuracy_table(correct, resamples)
    row = table.loc[("orig", "2")]
    assert row["low"] <= row["top1"] <= row["high"] and row["norm"] < 0.3
    assert table.loc[("orig", "uncompressed"), "norm"] == pytest.approx(1.0)
    gain, low, high = study.paired_gain(correct, "orig+2", "orig", "2", resamples)
    assert low > 0 and low <= gain <= high


def test_claims_are_computed_from_the_measurements():
    correct = fake_correct()
    resamples = study.bootstrap_indices(200, 300)
    acc = study.accuracy_table(correct, resamples)
    runs = study.caption_runs([7, 2])
    bleu = study.bleu_table({run: [{c: 20.0 + s - (10 if c == "2" and run == "baseline" else 0) for c in study.CONDITIONS}
                                for s in range(3)] for run in runs})
    claims = {c.id: c for c in study.headline_claims(acc, correct, resamples, bleu, [7, 2], num_classes=10)}
    assert claims["q2-gain"].verdict == "reproduced"
    assert claims["lower-q-copies-better"].verdict == "reproduced"
    assert claims["caption-baseline-drop"].verdict == "reproduced"
    assert claims["encoder-vs-captioner-2"].verdict == "differs"  # all runs equal: encoder is not better
    rows = study.table2_claims(acc, ["orig", "orig+2"], 48)
    assert all(c.verdict in ("reproduced", "differs") and len(c.ours) == 12 for c in rows)
    t3 = study.table3_claims(bleu, list(runs))
    assert {c.verdict for c in t3} <= {"reproduced", "differs"} and len(t3) == 7


def test_table3_is_not_comparable_when_the_captioner_did_not_learn():
    runs = study.caption_runs([2])
    bleu = study.bleu_table({run: [{c: 1.0 for c in study.CONDITIONS}] * 2 for run in runs})
    assert {c.verdict for c in study.table3_claims(bleu, list(runs))} == {"not comparable"}


def test_table1_claims_use_a_stated_tolerance():
    ours = study.paper_table("004_table1_psnr_ssim", ["metric"]).T
    ours.index = [int(q) for q in ours.index]
    ours = ours.rename(columns={"PSNR [dB]": "psnr_mean", "SSIM": "ssim_mean"})
    assert {c.verdict for c in study.table1_claims(ours, 5)} == {"reproduced"}
    ours["psnr_mean"] += 2.0
    assert study.table1_claims(ours, 5)[0].verdict == "differs"


def test_caption_runs_map_to_paper_rows():
    runs = study.caption_runs([7])
    assert runs == {"baseline": ("orig", None), "encoder+7": ("orig+7", None), "captioner+7": ("orig", 7),
                    "both+7": ("orig+7", 7)}
    assert study.paper_caption_row("captioner+7") == ("orig", "orig+7")
    assert study.word_overlap(["a", "dog"], ["A dog runs."]) == 1.0 and study.word_overlap([], ["x"]) == 0.0
    assert study.low_quality_mean({"7": 1.0, "5": 2.0, "3": 3.0, "2": 4.0}) == 2.5


def test_interval_claims_need_the_whole_interval_on_the_right_side():
    correct = fake_correct()
    resamples = study.bootstrap_indices(200, 300)
    kept = study._clean_kept_claim("c", "x", correct, resamples, ["orig", "orig+2"])
    # the same clean accuracy (0.8) in both mixes: a paired interval of a few points around 0 reaches below -2
    low = study.paired_gain(correct, "orig+2", "orig", "uncompressed", resamples)[1]
    assert kept.verdict == ("reproduced" if low > -2 else "differs") and "lies above -2" in kept.why
    better = {**correct, "orig+2": {**correct["orig+2"], "uncompressed": np.ones(200, bool)}}
    assert study._clean_kept_claim("c", "x", better, resamples, ["orig", "orig+2"]).verdict == "reproduced"
    tie = {**correct, "orig+2": {**correct["orig+2"], "2": correct["orig"]["2"].copy()}}
    tie["orig+2"]["2"][:3] = ~tie["orig+2"]["2"][:3]  # a gain of at most 1.5 points: its interval straddles 0
    assert study._gain_claim("g", "x", tie, resamples, 0.1).verdict == "differs"
    assert study._gain_claim("g", "x", correct, resamples, 0.1).verdict == "reproduced"
    chance = {m: {c: np.zeros(200, bool) | (np.arange(200) % 10 == 0) for c in study.CONDITIONS} for m in correct}
    chance["orig+2"]["2"] = np.ones(200, bool)
    assert study._gain_claim("g", "x", chance, resamples, 0.1).verdict == "not comparable"  # baseline at 10 % = chance


def test_caption_claims_are_not_comparable_when_the_captioner_did_not_learn():
    correct = fake_correct()
    resamples = study.bootstrap_indices(200, 300)
    acc = study.accuracy_table(correct, resamples)
    runs = study.caption_runs([2])
    weak = study.bleu_table({run: [{c: 4.0 + s - (2 if c == "2" and run == "baseline" else 0) for c in study.CONDITIONS}
                                for s in range(3)] for run in runs})
    claims = {c.id: c for c in study.headline_claims(acc, correct, resamples, weak, [2], num_classes=10)}
    assert claims["caption-baseline-drop"].verdict == claims["encoder-vs-captioner-2"].verdict == "not comparable"
    assert "barely describe" in claims["encoder-vs-captioner-2"].why


def test_pretrained_track_claims_and_zero_shot_reads_imagenette_logits():
    correct = {"zero-shot": fake_correct()["orig"], **fake_correct()}
    resamples = study.bootstrap_indices(200, 300)
    acc = study.accuracy_table(correct, resamples)
    claims = {c.id: c for c in study.pretrained_claims(acc, correct, resamples, ["orig", "orig+2"], 10)}
    assert set(claims) == {"zero-shot-collapse", "pretrained-collapse", "clean-kept-pretrained", "q2-gain-pretrained"}
    assert claims["zero-shot-collapse"].ours == 3 and claims["q2-gain-pretrained"].verdict == "reproduced"
    logits = torch.zeros(2, 1000)
    logits[0, 217], logits[1, 0] = 5.0, 5.0  # English springer, tench
    zero_shot = study.ZeroShot(torch.nn.Identity(), ["n01440764", "n02102040"])
    assert zero_shot(logits).argmax(1).tolist() == [1, 0]
    with pytest.raises(ValueError, match="no ImageNet class"):
        study.ZeroShot(torch.nn.Identity(), ["n99999999"])


def test_the_pretrained_classifier_starts_from_imagenet_and_feeds_the_captioner():
    model = study.new_classifier("efficientnet_lite0", 3, seed=0).eval()
    assert model(study.normalise(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))).shape == (2, 3)
    lite, _ = study.backbones.load("efficientnet_lite0", weights="imagenet")
    torch.testing.assert_close(model[1].conv_stem.weight, lite.conv_stem.weight)  # ImageNet weights, not random
    encoder = study.encoder_from(model.state_dict(), "efficientnet_lite0", 3, grid=2)
    assert encoder(study.normalise(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))).shape == (1, 4, 1280)
    with pytest.raises(ValueError, match="unknown classifier"):
        study.new_classifier("vgg11", 3)


def test_bleu_over_seeds_trains_every_run_with_every_seed(monkeypatch):
    import dataclasses
    from types import SimpleNamespace

    calls = []

    def train_captioner(state, arch, num_classes, caption_q, data, cfg, seed, device="cpu", tag=""):
        calls.append((tag, state, caption_q, seed, arch, num_classes, device))
        return {"tag": tag, "seed": seed}, False

    def caption_sweep(encoder, decoder, data, cfg, device="cpu"):
        run, seed = encoder["tag"], encoder["seed"]  # captioner_from (faked) hands the trained record through
        return {c: {"bleu4": 10.0 + seed + (c == "2") * len(run), "captions": [[run, str(seed)]], "attention": []}
                for c in study.CONDITIONS}

    monkeypatch.setattr(study, "train_captioner", train_captioner)
    monkeypatch.setattr(study, "captioner_from", lambda trained, *args: (trained, None))
    monkeypatch.setattr(study, "caption_sweep", caption_sweep)
    cfg = dataclasses.replace(study.settings("smoke").caption, seeds=3)
    runs = study.caption_runs([7, 2])
    encoders = {mix: {"state": f"state of {mix}", "history": {}} for mix in ("orig", "orig+7", "orig+2")}
    data = SimpleNamespace(vocab=["<pad>", "a", "dog"])
    table, sweeps = study.bleu_over_seeds(runs, encoders, "efficientnet_lite0", 10, data, cfg, seed=5)

    assert [(tag, seed) for tag, *_, seed, _, _, _ in calls] == [(run, s) for run in runs for s in (5, 6, 7)]
    assert all(state == encoders[runs[tag][0]]["state"] and q == runs[tag][1] for tag, state, q, *_ in calls)
    assert {(arch, n, device) for *_, arch, n, device in calls} == {("efficientnet_lite0", 10, "cpu")}
    assert table.shape == (len(runs) * len(study.CONDITIONS), 3) and list(table.columns) == ["bleu4", "sd", "seeds"]
    assert list(table.index.get_level_values("run").unique()) == list(runs) and (table["seeds"] == 3).all()
    assert table.loc[("baseline", "80"), "bleu4"] == pytest.approx(16.0)  # mean of 10 + 5, 6, 7
    assert table.loc[("baseline", "80"), "sd"] == pytest.approx(1.0)
    assert table.loc[("captioner+7", "2"), "bleu4"] == pytest.approx(16.0 + len("captioner+7"))
    assert list(sweeps) == list(runs) and sweeps["both+2"]["2"]["captions"] == [["both+2", "5"]]  # the first seed's
    # the table has every key the claims read
    assert len(study.table3_claims(table, list(runs))) == len(runs)
    claims = {c.id: c for c in study._caption_claims(table, [7, 2], min_clean_bleu=10.0)}
    assert set(claims) == {"caption-baseline-drop", "encoder-vs-captioner-7", "encoder-vs-captioner-2"}


def test_chapter_metrics_round_the_tables_and_have_the_reference_keys():
    from conftest import ROOT

    from helpers.codecs.jpeg import MIX_QUALITIES, TEST_QUALITIES
    from helpers.core import regression

    smoke = study.settings("smoke")
    rng = np.random.default_rng(0)
    conditions = list(study.CONDITIONS)

    def track(rows):
        correct = {m: {c: rng.random(60) < 0.7 for c in conditions} for m in rows}
        acc = study.accuracy_table(correct, study.bootstrap_indices(60, 50))
        return acc["top1"].unstack()[conditions].loc[list(rows)], acc

    top1, acc = track(study.MIXES)
    top1_pre, acc_pre = track(["zero-shot", *smoke.pretrained_mixes])
    runs = study.caption_runs(smoke.caption.mix_qualities)
    bleu = study.bleu_table({r: [{c: float(rng.uniform(0, 30)) for c in conditions} for _ in range(2)] for r in runs})
    table1 = pd.DataFrame({"psnr_mean": rng.uniform(20, 40, 12), "ssim_mean": rng.uniform(0.5, 1, 12)},
                          index=list(TEST_QUALITIES))
    resave_psnr = {q: 30.0 + q / 7 for q in MIX_QUALITIES}
    metrics = study.chapter_metrics(
        top1=top1, acc=acc, top1_pre=top1_pre, acc_pre=acc_pre, table1=table1, resave_psnr=resave_psnr,
        mean_bleu=bleu["bleu4"].unstack()[conditions].loc[list(runs)],
        sd_bleu=bleu["sd"].unstack()[conditions].loc[list(runs)])

    # shaped as the smoke run: exactly the names its reference (tests/notebooks/05.smoke-reference.json) compares
    reference = regression.load_reference(ROOT / "tests" / "notebooks" / "05.smoke-reference.json")
    assert set(regression.flatten(metrics)) == set(reference["metrics"])
    assert metrics["top1"]["orig+2"]["7"] == round(top1.loc["orig+2", "7"], 2)
    assert metrics["top1_normalised"]["orig"]["uncompressed"] == 1.0
    assert metrics["top1_pretrained_normalised"]["zero-shot"]["2"] == round(acc_pre.loc[("zero-shot", "2"), "norm"], 3)
    assert metrics["bleu4_sd"]["baseline"]["80"] == round(bleu.loc[("baseline", "80"), "sd"], 2)
    assert metrics["psnr_mean"]["2"] == round(table1.loc[2, "psnr_mean"], 2)
    assert metrics["ssim_mean"]["80"] == round(table1.loc[80, "ssim_mean"], 3)
    assert metrics["resave_psnr_db"] == {str(q): round(v, 2) for q, v in resave_psnr.items()}
