import gzip
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, sha256
from test_idx import idx_bytes

from helpers.core.profiles import ProfileError
from helpers.data import ImageSplit, registry
from helpers.methods.train import History
from helpers.codecs.jpeg_bytes import PAD_TOKEN
from helpers.models.bit_reader import BitReader
from helpers.models.block_reader import BlockReader, split_blocks
from helpers.models.byte_classifier import Bugs
from helpers.studies import ch01_jpeg_bytes as study

TINY = replace(study.settings("smoke"), embed_dim=8, hidden=8, batch_size=16, robust_size=None,
               glitch_counts=(0, 20), saliency_size=4)


def blobs(n=40, seed=0):
    """n 28x28 uint8 images of 10 classes: a bright square whose position depends on the class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 30, (n, 28, 28)).astype(np.uint8)
    for image, label in zip(images, labels):
        y, x = divmod(int(label), 5)
        image[4 + 10 * y:12 + 10 * y, 2 + 5 * x:7 + 5 * x] = 255
    return images, labels


class Always(torch.nn.Module):
    """A 'classifier' that answers ``label`` for every file."""

    def __init__(self, label: int) -> None:
        super().__init__()
        self.label = label

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.full((len(values),), self.label), 10).float()


def split_of(images, labels, name="toy", split="train"):
    return ImageSplit(images, labels, tuple(str(c) for c in range(10)), name, split)


@pytest.fixture(autouse=True, scope="module")
def no_subnormals():
    """As the chapter does: LSTM gradients decay into subnormal floats, which CPUs process very slowly."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


@pytest.fixture
def toy(isolated):
    images, labels = blobs()
    test_images, test_labels = blobs(20, seed=1)
    return study.TrainTest(split_of(images, labels), split_of(test_images, test_labels, split="test"), "toy")


def test_every_profile_has_settings_and_unknown_ones_are_refused():
    assert {study.settings(p).device for p in ("smoke", "cpu", "gpu")} == {"cpu", "cuda"}
    assert study.settings("gpu").official_mnist_train and not study.settings("cpu").official_mnist_train
    assert study.settings("gpu").hidden == 100 and study.settings("gpu").seeds >= 3
    assert study.settings("cpu").seeds >= 2
    with pytest.raises(ProfileError, match="valid profiles"):
        study.settings("laptop")


def test_cpu_split_of_the_mnist_test_set_is_stratified_and_disjoint(shared_data):
    data = study.load_train_test("mnist", study.settings("cpu"), seed=0)
    assert (len(data.train), len(data.test)) == (8000, 2000) and "not available offline" in data.note
    train_share = np.bincount(data.train.labels) / np.bincount(np.concatenate([data.train.labels, data.test.labels]))
    assert np.allclose(train_share, 0.8, atol=0.002)
    pairs = {img.tobytes() for img in data.train.images[:500]}
    assert not pairs & {img.tobytes() for img in data.test.images}


def test_gpu_profile_reads_the_official_train_split_through_the_download_path(isolated, register_temp):
    """The official MNIST files are not here; stand-ins served from file:// URLs take their place."""
    origin = isolated / "origin"
    origin.mkdir()
    files = []
    for split, n in (("train", 30), ("t10k", 20)):
        images, labels = blobs(n)
        for kind, array, code in (("images-idx3", images, 0x08), ("labels-idx1", labels.astype(np.uint8), 0x08)):
            name = f"{split}-{kind}-ubyte.gz"
            payload = gzip.compress(idx_bytes(array, code))
            (origin / name).write_bytes(payload)
            files.append(registry.RemoteFile(name, ((origin / name).as_uri(),), sha256=sha256(payload)))
    register_temp(replace(registry.spec("mnist"), files=tuple(files)))
    data = study.load_train_test("mnist", study.settings("gpu"), seed=0)
    assert (len(data.train), len(data.test)) == (30, 20) and data.train.split == "train"
    assert data.train.sources[0].source == "download"


def test_encodings_are_cached_by_content(toy):
    first, seconds = study.encode_split(toy.train)
    again, cached_seconds = study.encode_split(toy.train)
    assert seconds is not None and cached_seconds is None
    assert torch.equal(first.data, again.data) and len(first) == len(toy.train)
    wrapped, _ = study.encode_split(toy.train, overflow=True)
    assert not torch.equal(wrapped.data, first.data)  # the squares are full ink: the overflow blanks them


@pytest.mark.parametrize("variant", [Bugs.fixed(), Bugs.faithful()], ids=lambda v: v.name)
def test_prepare_pads_to_the_longest_training_file(toy, variant):
    data = study.prepare(toy, variant)
    assert data.header == 328 and data.train.values.shape == (40, data.layout.width)
    assert int(data.train.lengths.max()) == data.layout.width and data.train.truncated == 0
    assert data.layout.pad_value == variant.pad_value
    stripped = study.prepare(toy, variant, strip_header=True)
    assert stripped.header == 0 and stripped.layout.width == data.layout.width - 328
    assert "40 train / 20 test files" in data.describe()


def test_training_subset_is_stratified(toy):
    data = study.training_subset(study.prepare(toy, Bugs.fixed()), 20, seed=0)
    assert len(data.train_labels) == 20 and np.bincount(data.train_labels.numpy()).tolist() == [2] * 10
    assert len(data.train_images) == 20


def test_fit_caches_the_model_and_the_runners_report_sane_shapes(toy):
    data = study.prepare(toy, Bugs.fixed())
    small = study.training_subset(data, 20, 0)
    trained = study.fit(small, TINY, max_shift=2, max_zeroed=5, epochs=2, seed=0)
    again = study.fit(small, TINY, max_shift=2, max_zeroed=5, epochs=2, seed=0)
    assert not trained.cached and again.cached and trained.history.epochs == 2 and trained.samples_per_s > 0
    for a, b in zip(trained.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)
    pixel, _ = study.fit_pixel_cnn(toy.train.images, toy.train.labels, TINY)
    curve = study.robustness({"bytes": trained.model, "always 0": Always(0)}, pixel, data, TINY)
    assert len(curve) == 4 and set(curve["region"]) == set(study.REGIONS)
    clean = curve[curve["zeroed bytes"] == 0]
    assert (curve["always 0"] == 0.1).all()  # 2 of the 20 test files are 0s
    assert (clean["decodable"] == 1 - data.test.truncated / 20).all()  # only cut-off files fail to decode
    assert (clean["bytes"] == trained.test_acc[-1]).all()  # no zeroed bytes: the test accuracy
    assert (clean["pixel CNN"] == study.pixel_accuracy(pixel, data, TINY)).all()
    assert (curve["pixel CNN"] <= curve["decodable"]).all()  # a file Pillow cannot decode counts as wrong
    saliency = study.position_saliency(trained.model, data.test.values[:4], data.test_labels[:4])
    assert saliency.shape == (4, data.layout.width) and trained.model.share_prefix
    assert np.isfinite(saliency).all() and saliency.max() > 0
    table, runs = study.run_ablation(study.training_subset(data, 10, 0), replace(TINY, epochs=1, seeds=2), seed=0)
    assert list(table.index) == list(study.ABLATION) and (table["seeds"] == 2).all()
    assert runs["- augmentation - CNN"][0].model.conv_layers == 0
    table, runs = study.run_ablation(small, replace(TINY, reader_epochs=1, seeds=2), seed=0, design="reader")
    assert isinstance(runs["full model"][0].model, BitReader) and runs["- augmentation - CNN"][0].model.conv_layers == 0
    with pytest.raises(ValueError, match="unknown design"):
        study.byte_model(data, TINY, design="transformer")
    with pytest.raises(ValueError, match="fixed layout"):
        study.byte_model(study.prepare(toy, Bugs.faithful()), TINY, design="reader")
    with pytest.raises(ValueError, match="restart=True"):  # plain files have no block starts to cut at
        study.byte_model(data, TINY, design="blocks")


def test_the_block_reader_trains_on_restart_marked_files_with_their_own_shifts(toy):
    marked = study.prepare(toy, Bugs.fixed(), restart=True)
    plain = study.prepare(toy, Bugs.fixed())
    assert marked.restart and not plain.restart and "restart marker after every" in marked.describe()
    assert marked.header > plain.header  # the DRI segment (restart interval) joins the header
    assert (marked.train.lengths > plain.train.lengths).all()
    trained = study.fit(marked, TINY, design="blocks", max_shift=1, seed=0)
    assert isinstance(trained.model, BlockReader) and len(trained.test_acc) == TINY.reader_epochs
    assert study.fit(marked, TINY, design="blocks", max_shift=1, seed=0).cached
    loader = study._loader(marked, 4, max_shift=1, max_zeroed=0, seed=0)
    values, _ = next(iter(loader))  # files encoded on the fly keep their markers
    assert (split_blocks(values, marked.header) != PAD_TOKEN).any(-1).sum(1).min() >= 8


def test_learning_curve_trains_each_point_on_the_same_number_of_files_seen(toy):
    data = study.prepare(toy, Bugs.fixed())
    marked = study.prepare(toy, Bugs.fixed(), restart=True)
    pools = {"post": {"toy": data}, "blocks": {"toy": marked}}
    s = replace(TINY, curve_sizes=(("toy", 10), ("toy", 40)), curve_post_sizes=(("toy", 40),), curve_samples=80)
    curve = study.learning_curve(pools, s, seed=0)
    assert list(zip(curve["design"], curve["train files"])) == [("blocks", 10), ("post", 40), ("blocks", 40)]
    assert curve["epochs"].tolist() == [8, 2, 2] and (curve["files seen"] == 80).all()
    assert (curve["train s"] > 0).all()
    for point in curve.to_dict("records"):  # each point is the cached fit of its own subset, design and epochs
        again = study.fit(study.training_subset(pools[point["design"]]["toy"], point["train files"], 0), s,
                          design=point["design"], max_shift=study.shifts_of(point["design"], s),
                          epochs=point["epochs"], seed=0)
        assert again.cached and again.test_acc[-1] == point["test accuracy"]
    with pytest.raises(ValueError, match="never run"):
        study.learning_curve(pools, replace(s, curve_post_sizes=(("toy", 20),)), seed=0)
    with pytest.raises(ValueError, match="unknown designs"):
        study.learning_curve({"lstm": {"toy": data}}, s, seed=0)
    for profile in ("smoke", "cpu", "gpu"):
        chosen = study.settings(profile)
        assert set(chosen.curve_post_sizes) <= set(chosen.curve_sizes), profile


def test_glitched_files_and_pixel_predictions_count_undecodable_files_as_wrong(toy):
    data = study.prepare(toy, Bugs.fixed())
    wrecked = study.glitched(data.test, 60, data.header, protect_header=False, seed=0)
    assert ((wrecked.values == 0) & (data.test.values != 0)).sum(1).max() <= 60
    kept = study.glitched(data.test, 60, data.header, protect_header=True, seed=0)
    assert torch.equal(kept.values[:, :data.header], data.test.values[:, :data.header])
    decoded = study.decode_all(wrecked)
    assert any(d is None for d in decoded)
    pred = study.pixel_predictions(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), decoded, TINY)
    assert all((p == -1) == (d is None) for p, d in zip(pred, decoded))


def test_wilson_interval_brackets_the_accuracy():
    acc, low, high = study.accuracy_with_interval(np.array([True] * 45 + [False] * 5))
    assert acc == 0.9 and low < 0.9 < high and high - low > 0.15
    _, low_big, high_big = study.accuracy_with_interval(np.array([True] * 4500 + [False] * 500))
    assert high_big - low_big < 0.02


def measured(test_acc=0.99, full=0.99, noaug=0.97, lstm=0.9, sd=0.005, per_class=0.75, mean_bytes=600.0):
    row = lambda m: {"seeds": 2, "test mean": m, "test sd": sd, "train mean": 0.995}  # noqa: E731
    return {"test_acc": test_acc, "test_n": 2000, "train_size": 8000, "epochs": 6, "width": 32,
            "mean_bytes": mean_bytes, "header_bytes": 328,
            "train_acc": {"full model": 0.995, "- augmentation": 0.999, "- augmentation - CNN": 0.995},
            "ablation": {"full model": row(full), "- augmentation": row(noaug), "- augmentation - CNN": row(lstm)},
            "glitch_per_class": {str(c): per_class for c in range(10)}, "glitch_bytes": 50,
            "ablation_n": 2000, "ablation_model": "block reader", "ablation_data": "Fashion-MNIST"}


def test_claim_verdicts_follow_the_measurements():
    good = {c.id: c.verdict for c in study.paper_claims(measured())}
    assert good == dict.fromkeys(good, "reproduced") and len(good) == 6
    bad = {c.id: c.verdict for c in study.paper_claims(
        measured(test_acc=0.9, noaug=0.988, lstm=0.985, per_class=0.3, mean_bytes=560.0))}
    assert bad == dict.fromkeys(bad, "differs") | {"train_accuracy": "reproduced"}
    weak = {c.id: c.verdict for c in study.paper_claims(measured(test_acc=0.3, full=0.3, noaug=0.25, lstm=0.2))}
    assert weak["test_accuracy"] == "differs"
    assert {weak[k] for k in ("ablation_no_augmentation", "ablation_lstm_only", "glitch_robustness")} == {
        "not comparable"}
    # above 0.7 but a gap inside two standard errors on 2,000 files (0.011 here) does not count as a drop
    close = {c.id: c.verdict for c in study.paper_claims(measured(full=0.80, noaug=0.795, lstm=0.70, sd=0.001))}
    assert close["ablation_no_augmentation"] == "differs" and close["ablation_lstm_only"] == "reproduced"
    below = {c.id: c.verdict for c in study.paper_claims(measured(full=0.69, noaug=0.5, lstm=0.3))}
    assert below["ablation_no_augmentation"] == "not comparable"
    claims = study.paper_claims(measured())
    assert claims[0].paper == ">0.98" and "2,000 held-out digits" in claims[0].why


def test_saliency_runs_the_lstm_in_the_mode_cudnn_can_differentiate():
    """cuDNN refuses an LSTM backward pass in eval mode; the saliency must not depend on that mode."""
    from helpers.models.byte_classifier import ByteClassifier

    torch.manual_seed(0)
    model = ByteClassifier(Bugs.fixed(), embed_dim=8, hidden=8).eval()
    values = torch.randint(0, 256, (3, 40))
    modes: list[bool] = []
    hook = model.lstm.register_forward_hook(lambda m, _i, _o: modes.append(m.training))
    saliency = study.position_saliency(model, values, torch.tensor([0, 1, 2]))
    hook.remove()
    assert modes == [True] and not model.training  # trained mode inside, the caller's mode restored
    model.train()
    logits_train = model(values)
    model.eval()
    torch.testing.assert_close(logits_train, model(values))  # no dropout: the modes agree
    assert saliency.shape == (3, 40) and saliency.max() > 0


def test_a_loader_worker_gives_the_same_augmented_batches_and_new_ones_each_epoch(toy):
    """One persistent worker encodes while the model trains: runs repeat, epochs differ."""
    data = study.prepare(toy, Bugs.fixed())

    def two_epochs(workers):
        loader = study._loader(data, 8, max_shift=2, max_zeroed=0, seed=3, workers=workers)
        return [torch.cat([values for values, _ in loader]) for _ in range(2)]

    first, again, inline = two_epochs(1), two_epochs(1), two_epochs(0)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], first[1])  # new shifts in the second epoch, not a replay
    assert sorted(map(tuple, first[0].tolist())) == sorted(map(tuple, inline[0].tolist()))


def test_curve_summary_counts_a_rise_only_beyond_two_standard_errors():
    curve = pd.DataFrame({"dataset": ["a"] * 3 + ["b"] * 2, "design": ["reader"] * 5,
                          "train files": [4000, 1000, 2000, 1000, 8000],
                          "test accuracy": [0.62, 0.50, 0.55, 0.50, 0.52]})
    table = study.curve_summary(curve, {"a": 2000, "b": 2000})
    a, b = table.loc[("a", "reader")], table.loc[("b", "reader")]
    assert (a["fewest files"], a["most files"]) == (1000, 4000) and a["change"] == pytest.approx(0.12)
    assert a["more files help"] and not b["more files help"]  # +0.02 on 2,000 files is noise
    assert not study.curve_summary(curve.assign(**{"test accuracy": [0.5, 0.62, 0.55, 0.5, 0.52]}),
                                   {"a": 2000, "b": 2000}).loc[("a", "reader"), "more files help"]


def fake_run(test: float, train: float, epochs: int = 3) -> study.Trained:
    """A 'trained' model whose last epoch ends at ``test`` / ``train`` accuracy."""
    ramp = [0.1] * (epochs - 1)
    history = History(train_loss=[1.0] * epochs, train_acc=ramp + [train], val_acc=ramp + [test],
                      seconds=[1.0] * epochs, samples_per_s=[10.0, 30.0, 20.0][:epochs] + [20.0] * (epochs - 3))
    return study.Trained(torch.nn.Linear(1, 1), history, cached=False)


def test_the_chapter_measurements_feed_the_claims_and_the_results_file(toy):
    data = study.prepare(toy, Bugs.fixed())
    ablation = pd.DataFrame({"seeds": 2, "test mean": [0.8, 0.7, 0.6], "test sd": 0.01, "train mean": [0.9, 0.8, 0.7],
                             "test per seed": "text"}, index=pd.Index(list(study.ABLATION), name="setting"))
    main = fake_run(test=0.42, train=0.33)
    assert main.test_acc[-1] == 0.42 and main.samples_per_s == 20.0
    measured = study.claim_measurements(
        study.settings("cpu"), main, data, mean_bytes=600.0, header_bytes=300, ablation=ablation,
        ablation_data=study.training_subset(data, 20, 0), glitch_per_class={str(c): 0.7 for c in range(10)},
        glitch_bytes=150)
    assert measured["test_acc"] == 0.42 and measured["test_n"] == 20 and measured["ablation_n"] == 20
    assert measured["train_acc"] == {"post's model (MNIST)": 0.33, "block reader (Fashion)": 0.9}
    assert measured["ablation_model"] == "block reader"
    assert measured["ablation"]["- augmentation"] == {"seeds": 2.0, "test mean": 0.7, "test sd": 0.01, "train mean": 0.8}
    assert len(study.paper_claims(measured)) == 6  # every key the claims read is there

    metrics = study.result_metrics(
        main, data, mean_bytes=600.0, header_bytes=300, curve=pd.DataFrame({"files": [1, 2]}),
        reader_vs_pixel=pd.DataFrame({"ratio": [0.5]}), ablation=ablation, other_name="faithful",
        other=fake_run(0.2, 0.25), no_header=fake_run(0.3, 0.35), longer=fake_run(0.4, 0.5, epochs=12),
        robustness=pd.DataFrame({"zeroed bytes": [0, 50]}), per_class=pd.DataFrame({"bit reader": [0.7]}))
    assert metrics["test_accuracy"] == 0.42 and metrics["faithful_variant_test_accuracy"] == 0.2
    assert metrics["no_header_test_accuracy"] == 0.3 and metrics["learning_curve"] == {"files": [1, 2]}
    assert metrics["longer_training"] == {"epochs": 12, "train_accuracy": 0.5, "test_accuracy": 0.4}
    assert metrics["ablation_test_mean"] == dict(zip(study.ABLATION, [0.8, 0.7, 0.6]))
    reference = json.loads((ROOT / "tests" / "notebooks" / "01.smoke-reference.json").read_text())
    assert {name.split(".")[0] for name in reference["metrics"]} <= set(metrics)  # what the smoke copy compares
