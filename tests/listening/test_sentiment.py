import pytest

from incidents.listening.sentiment import score
from incidents.listening.text import matches_any, normalise


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Great service, thanks!", 1),
        ("This is NOT good", -1),
        ("Terrible outage and a scam", -1),
        ("Adatszivárgás! SZÖRNYŰ.", -1),
        ("Nem jó", -1),
        ("זה לא טוב", -1),
        ("שירות מצוין, תודה", 1),
        ("Δεν είναι καλό", -1),
        ("ΑΠΆΤΗ", -1),
        ("Υπέροχο!", 1),
        ("The sky is blue", 0),
    ],
)
def test_it_scores_four_languages_with_negation(text, expected):
    assert score(text) == expected


def test_keywords_ignore_case_and_accents_and_match_whole_words():
    text = normalise("A PÉNZTÁR megint nem működik; Checkout-Broken!")
    assert matches_any(text, ["penztar"]) == "penztar"
    assert matches_any(text, ["checkout broken"]) == "checkout broken"
    assert matches_any(text, ["check"]) is None
    assert matches_any(normalise("Ελληνική ΚΛΟΠΉ"), ["κλοπη"]) == "κλοπη"
