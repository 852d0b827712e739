"""Text normalization, exact and near-duplicate detection: word n-gram Jaccard similarity against a
fixed reference set (test-set overlap), and a MinHash LSH index that drops repeated instructions."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from datasketch import MinHash, MinHashLSH

_NON_WORD = re.compile(r"[^\w]+")

NEAR_DUP_THRESHOLD = 0.8
MINHASH_PERMUTATIONS = 128
# datasketch hashes with sha1 and draws its permutations from this seed: the same texts give the
# same signatures in every process, so which row is dropped depends only on the rows and their order.
_MINHASH_SEED = 1
# Every LSH candidate is checked against the Jaccard estimate, so the banding is tuned to miss few
# true matches (about 13% exactly at 0.8, against 60% with datasketch's even weights) at the cost
# of more candidates to check. Above 0.95 it cannot band 128 permutations; candidates from 0.95 up
# are then checked against the higher threshold.
_LSH_WEIGHTS = (0.1, 0.9)
_LSH_MAX_THRESHOLD = 0.95


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


def minhash(text: str, *, n: int = 3, num_perm: int = MINHASH_PERMUTATIONS) -> MinHash | None:
    """The MinHash signature of the text's word n-grams; None for a text without words."""
    grams = word_ngrams(text, n)
    if not grams:
        return None
    signature = MinHash(num_perm=num_perm, seed=_MINHASH_SEED)
    signature.update_batch(sorted(" ".join(gram).encode() for gram in grams))
    return signature


class MinHashIndex:
    """Texts added so far, in a MinHash LSH index: which earlier text a new one nearly repeats.

    LSH only proposes candidates; a match is the earliest-added one whose MinHash Jaccard estimate
    reaches the threshold, so the answer does not depend on the index's bucket order.
    """

    def __init__(
        self, threshold: float = NEAR_DUP_THRESHOLD, *, n: int = 3,
        num_perm: int = MINHASH_PERMUTATIONS,
    ) -> None:
        self.threshold, self.n, self.num_perm = threshold, n, num_perm
        self._lsh = MinHashLSH(threshold=min(threshold, _LSH_MAX_THRESHOLD), num_perm=num_perm,
                               weights=_LSH_WEIGHTS)
        self._signatures: dict[str, tuple[int, MinHash]] = {}

    def __len__(self) -> int:
        return len(self._signatures)

    def _first_match(self, signature: MinHash) -> tuple[str, float] | None:
        """The earliest-added text whose estimated Jaccard with `signature` reaches the threshold."""
        found = sorted((self._signatures[key][0], key) for key in self._lsh.query(signature))
        for _, key in found:
            similarity = float(signature.jaccard(self._signatures[key][1]))
            if similarity >= self.threshold:
                return key, similarity
        return None

    def match_or_add(self, key: str, text: str) -> tuple[str, float] | None:
        """The earlier text `text` nearly repeats (its key and the estimate), else add it under `key`."""
        signature = minhash(text, n=self.n, num_perm=self.num_perm)
        if signature is None:
            return None
        found = self._first_match(signature)
        if found is None:
            self._lsh.insert(key, signature)
            self._signatures[key] = (len(self._signatures), signature)
        return found


def drop_repeated_instructions(
    rows: Sequence[MutableMapping[str, Any]], near_dup_threshold: float = NEAR_DUP_THRESHOLD
) -> int:
    """Un-keep each kept row whose instruction repeats an earlier kept one; returns how many.

    Rows are taken in the given order (shard order, then row order). A repeat after normalization
    gets `drop_reason` "duplicate", one whose MinHash Jaccard estimate over word 3-grams reaches
    `near_dup_threshold` gets "near_duplicate"; both name the earlier row in `duplicate_of`.
    """
    exact: dict[str, str] = {}
    index = MinHashIndex(near_dup_threshold)
    dropped = 0
    for row in rows:
        if not row.get("kept"):
            continue
        text = row.get("instruction") or ""
        key = normalize_text(text)
        if key in exact:
            row.update(kept=False, drop_reason="duplicate", duplicate_of=exact[key])
        elif (near := index.match_or_add(row["id"], text)) is not None:
            row.update(kept=False, drop_reason="near_duplicate", duplicate_of=near[0],
                       near_dup_similarity=round(near[1], 4))
        else:
            exact[key] = row["id"]
            continue
        dropped += 1
    return dropped
