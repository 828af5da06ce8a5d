"""Text as the rules see it: casefolded, accents stripped, split into words.

A mention's text is normalised once (``normalise``) and every rule's keywords
are matched against that one string. A keyword matches whole words in order
("data leak" matches "Data-leak!" but not "dataleak"); Hebrew prefixes written
onto a word (ה, ו, ב, ל, מ, ש, כ) are not split off, so list the forms you need.
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """Casefold, drop combining marks (accents, niqqud), keep words: " w1 w2 … "."""
    decomposed = unicodedata.normalize("NFKD", (text or "").casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " " + " ".join(_WORD.findall(stripped)) + " "


def matches_any(normalised_text: str, keywords: list[str]) -> str | None:
    """The first keyword found as whole words in the normalised text, else None."""
    for keyword in keywords:
        needle = normalise(keyword)
        if needle.strip() and needle in normalised_text:
            return keyword
    return None
