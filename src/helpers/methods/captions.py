"""Caption text: a tokeniser, a vocabulary built from training captions, and corpus BLEU-4.

Tokens are lower-case runs of letters and digits (``"A man's hat."`` -> ``a man s hat``), the
same normalisation for training captions, references and generated captions. BLEU-4 is
sacrebleu's corpus BLEU on those tokens (``tokenize="none"``), with every reference caption
of an image as a reference, like the study's (NLTK) corpus BLEU on word ids.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar, Iterable, Sequence

import sacrebleu

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)
_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens of a caption (punctuation dropped)."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Vocabulary:
    """Words seen at least ``min_count`` times in the training captions, plus the four special tokens.

    Rarer words map to ``<unk>``; ``min_count`` is the study code's threshold knob (5 on full COCO;
    on a few hundred captions 2 keeps the words that occur more than once).
    """

    words: tuple[str, ...]
    min_count: int
    pad: ClassVar[int] = SPECIALS.index(PAD)  # ids of the special tokens, the first four words
    start: ClassVar[int] = SPECIALS.index(START)
    end: ClassVar[int] = SPECIALS.index(END)
    unk: ClassVar[int] = SPECIALS.index(UNK)

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 5) -> "Vocabulary":
        """The vocabulary of ``captions``: words with count >= ``min_count``, most frequent first."""
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        counts = Counter(t for caption in captions for t in tokenize(caption))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + tuple(kept), min_count)

    def __len__(self) -> int:
        return len(self.words)

    @property
    def index(self) -> dict[str, int]:
        """Word -> id."""
        return {w: i for i, w in enumerate(self.words)}

    def encode(self, caption: str, max_words: int | None = None) -> list[int]:
        """``<start> w1 ... wn <end>`` as ids (unknown words -> ``<unk>``; at most ``max_words`` words)."""
        index = self.index
        tokens = tokenize(caption)[:max_words]
        return [self.start, *(index.get(t, self.unk) for t in tokens), self.end]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Words of an id sequence, stopping at ``<end>`` and skipping ``<start>`` and padding."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.end:
                break
            if i not in (self.start, self.pad):
                words.append(self.words[i])
        return words


def bleu4(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 (0-100) of token lists against each image's reference captions (raw strings)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    if not hypotheses:
        raise ValueError("bleu4 needs at least one hypothesis")
    if any(len(r) == 0 for r in references):
        raise ValueError("every hypothesis needs at least one reference caption")
    width = max(len(r) for r in references)
    streams = [[" ".join(tokenize(r[k])) if k < len(r) else None for r in references] for k in range(width)]
    return float(sacrebleu.corpus_bleu([" ".join(h) for h in hypotheses], streams, tokenize="none").score)
