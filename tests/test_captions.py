import pytest
import sacrebleu

from helpers.methods.captions import SPECIALS, Vocabulary, bleu4, tokenize

CAPTIONS = ["A man riding a horse.", "A man's hat on a table", "Two dogs play", "a horse in a field"]


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A man's HAT, on 2 tables!") == ["a", "man", "s", "hat", "on", "2", "tables"]


def test_vocabulary_keeps_words_at_min_count():
    vocab = Vocabulary.build(CAPTIONS, min_count=2)
    assert vocab.words[:4] == SPECIALS
    assert set(vocab.words[4:]) == {"a", "man", "horse"}
    assert vocab.words[4] == "a"  # most frequent first
    assert len(Vocabulary.build(CAPTIONS, min_count=1)) == 4 + len({t for c in CAPTIONS for t in tokenize(c)})
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build(CAPTIONS, min_count=0)


def test_encode_decode_round_trip_and_unknown_words():
    vocab = Vocabulary.build(CAPTIONS, min_count=1)
    ids = vocab.encode("A man riding a horse.")
    assert ids[0] == vocab.start and ids[-1] == vocab.end
    assert vocab.decode(ids + [vocab.pad, vocab.pad]) == ["a", "man", "riding", "a", "horse"]
    rare = Vocabulary.build(CAPTIONS, min_count=2)
    assert rare.decode(rare.encode("a zebra")) == ["a", "<unk>"]
    assert len(rare.encode("a man a man a man", max_words=2)) == 4


def test_bleu4_on_known_sentences():
    refs = [["the cat is on the mat", "there is a cat on the mat"]]
    assert bleu4([tokenize("the cat is on the mat")], refs) == pytest.approx(100.0)
    assert bleu4([["dog", "runs", "fast", "away"]], refs) == pytest.approx(0.0, abs=1e-6)
    hyp = ["the cat sat on the mat"]
    expected = sacrebleu.corpus_bleu(hyp, [[refs[0][0]], [refs[0][1]]], tokenize="none").score
    assert bleu4([tokenize(hyp[0])], refs) == pytest.approx(expected)
    assert 0 < expected < 100


def test_bleu4_accepts_varying_reference_counts_and_rejects_bad_input():
    score = bleu4([["a", "b", "c", "d"], ["a", "b", "c", "d"]], [["a b c d"], ["a b c d", "x y z w"]])
    assert score == pytest.approx(100.0)
    with pytest.raises(ValueError, match="reference sets"):
        bleu4([["a"]], [])
    with pytest.raises(ValueError, match="at least one reference"):
        bleu4([["a"]], [[]])
