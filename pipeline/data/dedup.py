"""Text normalization, exact and near-duplicate detection by word n-gram Jaccard similarity."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

_NON_WORD = re.compile(r"[^\w]+")


def normalize_text(text: str) -> str:
    """NFKC, lower case, punctuation to spaces, whitespace collapsed: what counts as 'the same'."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", folded).split())


def word_ngrams(text: str, n: int) -> frozenset[tuple[str, ...]]:
    """The word n-grams of the normalized text; a text shorter than n is one gram of itself."""
    words = normalize_text(text).split()
    if len(words) < n:
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    """|a ∩ b| / |a ∪ b|, 0 for two empty sets."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


@dataclass(frozen=True)
class Match:
    """A reference text that overlaps a query: exactly (after normalization) or nearly."""

    index: int
    kind: str
    similarity: float


class NearDupIndex:
    """Reference texts indexed by normalized form and by n-gram, for fast overlap queries."""

    def __init__(self, texts: Iterable[str], *, n: int = 3) -> None:
        self.n = n
        self.exact: dict[str, int] = {}
        self.grams: list[frozenset] = []
        self.postings: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i, text in enumerate(texts):
            self.exact.setdefault(normalize_text(text), i)
            grams = word_ngrams(text, n)
            self.grams.append(grams)
            for gram in grams:
                self.postings[gram].append(i)

    def __len__(self) -> int:
        return len(self.grams)

    def best_match(self, text: str, threshold: float) -> Match | None:
        """The exact match, else the most similar text with Jaccard >= threshold, else None."""
        exact = self.exact.get(normalize_text(text))
        if exact is not None:
            return Match(exact, "exact", 1.0)
        grams = word_ngrams(text, self.n)
        # Only texts sharing at least one gram can reach a positive threshold.
        candidates = {i for gram in grams for i in self.postings.get(gram, ())}
        scored = [(jaccard(grams, self.grams[i]), i) for i in sorted(candidates)]
        best = max(scored, default=(0.0, -1), key=lambda pair: pair[0])
        if best[1] >= 0 and best[0] >= threshold:
            return Match(best[1], "near", best[0])
        return None
