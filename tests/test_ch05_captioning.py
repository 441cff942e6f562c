"""Chapter 05's training runners on tiny synthetic data: the mix batches, the classifier, the captioner
and the quality sweep (CPU, a few seconds each)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from helpers.codecs.jpeg import compress, compress_then_resave
from helpers.methods.captions import Vocabulary, bleu4
from helpers.studies import ch05_jpeg_robustness as study

COLOURS = ((220, 40, 40), (40, 60, 220))  # class 0 red, class 1 blue
CLASSIFY = study.ClassifySettings(
    train_per_class=None, val_per_class=None, full=False, image_size=32, compress_size=None, store_size=36, epochs=6,
    batch_size=4, lr=0.01, weight_decay=0.0, equal_updates=True, random_quality=(2, 90), bootstrap=10)
CAPTION = study.CaptionSettings(
    karpathy=False, train_images=None, test_images=None, compress_size=None, image_size=32, grid=2, min_count=1,
    max_words=8, captions_per_image=2, embed_dim=16, hidden_dim=32, attention_dim=16, stage1_epochs=40,
    stage2_epochs=1, batch_images=4, decoder_lr=1e-2, encoder_lr=1e-4, fine_tune_last=1, alpha_c=1.0, beam=2,
    seeds=1, mix_qualities=(10,))
CAPTIONS = ("a red box on the left", "a blue box on the right", "a red ball at the top", "a blue ball at the bottom")


@pytest.fixture(autouse=True)
def one_thread(request):
    """As the smoke profile: on a busy 2-core machine 2-thread torch runs these tiny models many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    request.addfinalizer(lambda: torch.set_num_threads(threads))


def pictures(n: int, seed: int) -> tuple[list[Image.Image], np.ndarray]:
    """``n`` 48x48 noisy pictures alternating between the two classes, each with a white shape placed by index."""
    rng = np.random.default_rng(seed)
    images, labels = [], np.arange(n) % 2
    for i, label in enumerate(labels):
        pixels = np.clip(np.array(COLOURS[label]) + rng.normal(0, 20, (48, 48, 3)), 0, 255).astype(np.uint8)
        y, x = divmod(i % 4, 2)
        pixels[8 + 20 * y:20 + 20 * y, 8 + 20 * x:20 + 20 * x] = 255
        images.append(Image.fromarray(pixels))
    return images, labels


def classification_data(mix: study.Mix, n: int = 8, seed: int = 0) -> study.ClassificationData:
    """A two-class ``ClassificationData`` with the fixed copies of ``mix``, as ``prepare_classification`` builds it."""
    sources, labels = pictures(n, seed)
    copies = {mix.name: torch.stack([study.square(mix.copy_of(im), CLASSIFY.store_size) for im in sources])
              } if mix.has_copies and not mix.random else {}
    train = torch.stack([study.square(im, CLASSIFY.store_size) for im in sources])
    test = {"uncompressed": v2.functional.center_crop(train, [CLASSIFY.image_size] * 2)}
    return study.ClassificationData(sources, train, torch.as_tensor(labels), copies, test, torch.as_tensor(labels),
                                    ("red", "blue"))


def unaugmented(batches: study.MixBatches) -> study.MixBatches:
    """``batches`` with its random crop and flip replaced by a centre crop, so its images can be compared."""
    batches.augment = v2.CenterCrop(batches.cfg.image_size)
    return batches


def expected(image: Image.Image, quality: int | None = None) -> torch.Tensor:
    """What a batch holds for ``image`` (or its copy at ``quality``, re-saved at 75) after ``unaugmented``."""
    if quality is not None:
        image = compress_then_resave(image, quality, 75)
    square = study.square(image, CLASSIFY.store_size)
    return study.normalise(v2.functional.center_crop(square, [CLASSIFY.image_size] * 2)[None])[0]


def test_mix_batches_hold_every_original_then_its_copy_at_the_mix_quality():
    mix = study.Mix("orig+10", 10)
    data = classification_data(mix)
    n = len(data.train)
    batches = study.MixBatches(data, mix, CLASSIFY, torch.Generator().manual_seed(0))
    assert len(batches) == 2 * n  # half of what a uniform sampler draws are JPEG copies
    images, labels = batches(list(range(2 * n)))
    assert images.shape == (2 * n, 3, 32, 32) and images.dtype == torch.float32  # randomly cropped to image_size
    images, labels = unaugmented(batches)(list(range(2 * n)))
    assert labels.tolist() == data.labels.tolist() * 2  # a copy keeps its original's label
    for i, source in enumerate(data.sources):
        torch.testing.assert_close(images[i], expected(source))
        torch.testing.assert_close(images[n + i], expected(source, 10))
    assert not torch.allclose(images[:n], images[n:], atol=0.1)  # quality 10 visibly changes the pictures
    orig = study.MixBatches(data, study.Mix("orig"), CLASSIFY, torch.Generator())
    assert len(orig) == n


def test_random_mix_draws_one_quality_per_batch_from_the_range():
    mix = study.Mix("orig+random", random=True)
    data = classification_data(mix)
    n = len(data.train)
    batches = unaugmented(study.MixBatches(data, mix, CLASSIFY, torch.Generator().manual_seed(3)))
    draws = torch.Generator().manual_seed(3)
    for _ in range(2):
        quality = int(torch.randint(2, 91, (1,), generator=draws))
        images, _ = batches([0, n, n + 1])
        torch.testing.assert_close(images[0], expected(data.sources[0]))
        for k in (1, 2):
            torch.testing.assert_close(images[k], expected(data.sources[k - 1], quality))
    single = replace(CLASSIFY, random_quality=(5, 5))
    images, _ = unaugmented(study.MixBatches(data, mix, single, torch.Generator()))([n + 3])
    torch.testing.assert_close(images[0], expected(data.sources[3], 5))


def test_train_mix_learns_is_cached_and_repeats_under_its_seed(isolated, monkeypatch):
    mix = study.Mix("orig+10", 10)
    data = classification_data(mix)
    trained, cached = study.train_mix(data, mix, CLASSIFY, seed=0)
    assert not cached and len(trained["history"]["train_loss"]) == CLASSIFY.epochs
    assert trained["history"]["train_loss"][-1] < 0.5 * trained["history"]["train_loss"][0]
    again, cached = study.train_mix(data, mix, CLASSIFY, seed=0)
    assert cached and all(torch.equal(v, again["state"][k]) for k, v in trained["state"].items())
    monkeypatch.setenv("BOOK_CACHE_DIR", str(isolated / "another-cache"))
    rebuilt, cached = study.train_mix(data, mix, CLASSIFY, seed=0)
    assert not cached and all(torch.equal(v, rebuilt["state"][k]) for k, v in trained["state"].items())


def test_train_mix_keys_hold_the_training_images(isolated):
    """Two data sets of the same size are two cache entries, not one model served for both."""
    mix, settings = study.Mix("orig"), replace(CLASSIFY, epochs=1)
    first, other = classification_data(mix, seed=0), classification_data(mix, seed=1)
    assert study.data_digest(first.train, first.labels) != study.data_digest(other.train, other.labels)
    assert not study.train_mix(first, mix, settings, seed=0)[1]
    assert not study.train_mix(other, mix, settings, seed=0)[1]
    assert study.train_mix(first, mix, settings, seed=0)[1]


def caption_data(seed: int = 0) -> study.CaptionData:
    """Four pictures with a caption each (twice), tested on the same pictures, as ``prepare_captioning`` builds it."""
    sources, _ = pictures(4, seed)
    vocab = Vocabulary.build(CAPTIONS, min_count=1)
    encoded = [vocab.encode(c, CAPTION.max_words) for c in CAPTIONS]
    captions = torch.zeros((4, CAPTION.captions_per_image, max(map(len, encoded))), dtype=torch.long)
    for i, ids in enumerate(encoded):
        captions[i, :, :len(ids)] = torch.tensor(ids)

    def stack(images) -> torch.Tensor:
        return torch.stack([study.square(im, CAPTION.image_size) for im in images])

    copies = {q: stack(compress_then_resave(im, q) for im in sources) for q in CAPTION.mix_qualities}
    test = {c: stack(im if c == "uncompressed" else compress(im, int(c)) for im in sources) for c in study.CONDITIONS}
    return study.CaptionData(vocab, sources, stack(sources), copies, captions, test, [[c] for c in CAPTIONS],
                             list(range(4)))


@pytest.fixture
def encoder_state() -> dict:
    """A random ResNet-18 classifier's weights: the captioner's encoder before training."""
    torch.manual_seed(0)
    return study.new_classifier("resnet18", 2).state_dict()


def test_captioner_memorises_a_tiny_set_and_is_cached(isolated, encoder_state):
    data = caption_data()
    trained, cached = study.train_captioner(encoder_state, "resnet18", 2, None, data, CAPTION, seed=0)
    losses = trained["history"]["stage1_loss"]
    assert not cached and len(losses) == CAPTION.stage1_epochs and len(trained["history"]["stage2_loss"]) == 1
    assert losses[-1] < 0.4 * losses[0]  # dropout and the attention penalty keep it above zero
    again, cached = study.train_captioner(encoder_state, "resnet18", 2, None, data, CAPTION, seed=0)
    assert cached and all(torch.equal(v, again["decoder"][k]) for k, v in trained["decoder"].items())
    encoder, decoder = study.captioner_from(trained, "resnet18", 2, len(data.vocab), CAPTION)
    sweep = study.caption_sweep(encoder, decoder, data, CAPTION, conditions=("uncompressed", "2"))
    assert list(sweep) == ["uncompressed", "2"]  # one entry per quality asked for
    for result in sweep.values():
        assert len(result["captions"]) == 4 and result["bleu4"] == bleu4(result["captions"], data.references)
        for words, attention in zip(result["captions"], result["attention"]):  # a row per word and <end>
            assert attention.shape[1] == CAPTION.grid ** 2 and len(words) <= len(attention) <= CAPTION.max_words + 2
    assert [" ".join(c) for c in sweep["uncompressed"]["captions"]] == list(CAPTIONS)  # the training pictures
    assert sweep["uncompressed"]["bleu4"] == pytest.approx(100)


def test_captioner_keys_hold_the_images_and_the_copies_added(isolated, encoder_state):
    settings = replace(CAPTION, stage1_epochs=1, stage2_epochs=0)
    first, other = caption_data(seed=0), caption_data(seed=1)
    assert not study.train_captioner(encoder_state, "resnet18", 2, None, first, settings, seed=0)[1]
    assert not study.train_captioner(encoder_state, "resnet18", 2, None, other, settings, seed=0)[1]
    assert not study.train_captioner(encoder_state, "resnet18", 2, 10, first, settings, seed=0)[1]
    assert study.train_captioner(encoder_state, "resnet18", 2, None, first, settings, seed=0)[1]
