"""Sentiment from a small lexicon per language (en, he, hu, el): -1, 0 or +1.

The files ``lexicon/<language>.csv`` hold ``word,polarity`` rows: ``-1`` a
negative word, ``1`` a positive one, ``neg`` a negation that flips the next
scored word within three words ("not good" is negative). The score is the sum;
below zero is negative, above is positive.

Its limits, said plainly: a few dozen words per language, matched as whole words
after case and accents are stripped (so Hungarian and Hebrew inflections and
prefixes are missed unless listed), no irony, sarcasm, emoji or context, and a
text in another language scores 0 unless its words happen to be in a list. It
is a first sort for a triage inbox, not a judgement; a sentiment the sender
gives always wins.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

from incidents.listening.text import normalise

LEXICON_DIR = Path(__file__).resolve().parent / "lexicon"
LANGUAGES = ("en", "he", "hu", "el")
NEGATION_REACH = 3


@cache
def _lexicon() -> tuple[dict[str, int], frozenset[str]]:
    scores: dict[str, int] = {}
    negations: set[str] = set()
    for language in LANGUAGES:
        with (LEXICON_DIR / f"{language}.csv").open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                word = normalise(row["word"]).strip()
                if not word:
                    continue
                if row["polarity"] == "neg":
                    negations.add(word)
                else:
                    scores[word] = int(row["polarity"])
    return scores, frozenset(negations)


def score(text: str, *, normalised: str | None = None) -> int:
    """-1 negative, 0 neutral or unknown, +1 positive."""
    scores, negations = _lexicon()
    words = (normalised if normalised is not None else normalise(text)).split()
    total = 0
    flip_until = -1
    for i, word in enumerate(words):
        if word in negations:
            flip_until = i + NEGATION_REACH
            continue
        value = scores.get(word, 0)
        if value:
            total += -value if i <= flip_until else value
            flip_until = -1
    return (total > 0) - (total < 0)
