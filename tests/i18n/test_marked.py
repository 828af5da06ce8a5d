"""Every word a person reads in a template is marked for translation.

A simple, deliberately strict reading of each template under templates/:
comments, {% translate %} tags and {% blocktranslate %} blocks, every other
tag and variable, <style> and <script> bodies and HTML tags are taken out;
what is left must hold no word (two letters or more). The attributes a person
reads or hears (title, alt, aria-label, placeholder, a button's value) are
checked the same way. Brand names, units and the like are in ALLOWED. And no
punctuation may be glued on to a translated string from outside it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

TEMPLATES = Path(settings.BASE_DIR) / "templates"

# Words that are the same in every language: the product, severity codes, units.
ALLOWED = {"CrisisDesk", "SEV", "INC", "UTC", "PDF", "CSV", "YAML", "API"}

# Plain-text e-mail templates are checked too: their words must all be inside
# {% blocktranslate %} or {% translate %}.
SUFFIXES = {".html", ".txt", ".md", ".svg"}

# Blocks whose content is an identifier (a CSS class), not words.
_IDENTIFIER_BLOCK = re.compile(r"{%\s*block\s+body_class\s*%}.*?{%\s*endblock\b[^%]*%}", re.S)
_URL = re.compile(r"(?:https?://|/)\S*")
_COMMENT = re.compile(r"{#.*?#}|{%\s*comment\b.*?%}.*?{%\s*endcomment\s*%}", re.S)
_BLOCKTRANS = re.compile(r"{%\s*blocktrans(?:late)?\b.*?{%\s*endblocktrans(?:late)?\s*%}", re.S)
_TAG = re.compile(r"{%.*?%}", re.S)
_VARIABLE = re.compile(r"{{.*?}}", re.S)
_RAW = re.compile(r"<(style|script)\b.*?</\1\s*>", re.S | re.I)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_DOCTYPE = re.compile(r"<!doctype[^>]*>|<\?xml[^>]*\?>", re.I)
_HTML_TAG = re.compile(r"<[A-Za-z/][^>]*>", re.S)
_READ_ATTRIBUTE = re.compile(
    r"""\b(title|alt|aria-label|placeholder|label|value)\s*=\s*("[^"]*"|'[^']*')""", re.I
)
# A translated string with punctuation glued on from outside ("{% translate 'Title' %}:"):
# the translator cannot move it, and in Hebrew it lands on the wrong side.
_GLUED = re.compile(
    r"{%\s*(?:translate|trans|endblocktranslate|endblocktrans)\b[^%]*%}[ ]?[:.;?!](?=\s|<|{|$)"
)
_ENTITY = re.compile(r"&#?\w+;")
_WORD = re.compile(r"[^\W\d_]{2,}")


def _words(text: str) -> list[str]:
    text = _URL.sub(" ", _ENTITY.sub(" ", text))
    return [w for w in _WORD.findall(text) if w not in ALLOWED]


def unmarked(source: str) -> list[str]:
    """The words left outside translation tags, and punctuation glued on to a translated
    string from outside, with a little context for the message."""
    source = _COMMENT.sub(" ", source)
    glued = [m.group(0) for m in _GLUED.finditer(source)]
    source = _IDENTIFIER_BLOCK.sub(" ", source)
    source = _BLOCKTRANS.sub(" ", source)
    source = _TAG.sub(" ", source)
    source = _VARIABLE.sub(" ", source)
    source = _RAW.sub(" ", source)
    source = _HTML_COMMENT.sub(" ", source)
    source = _DOCTYPE.sub(" ", source)
    found = glued
    for tag in _HTML_TAG.findall(source):
        for name, value in _READ_ATTRIBUTE.findall(tag):
            if name.lower() == "value" and not re.match(
                r"<input\b[^>]*\btype\s*=\s*[\"']?(submit|button|reset)", tag, re.I
            ):
                continue  # a form's value is data, not words (a button's value is not shown)
            if _words(value[1:-1]):
                found.append(f"{name}={value}")
    for text in _HTML_TAG.sub("\n", source).splitlines():
        if _words(text):
            found.append(text.strip())
    return found


def _templates() -> list[Path]:
    return sorted(p for p in TEMPLATES.rglob("*") if p.suffix in SUFFIXES)


@pytest.mark.parametrize("path", _templates(), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_it_marks_every_word_in_templates(path):
    assert unmarked(path.read_text(encoding="utf-8")) == []


def test_it_catches_an_unmarked_word():
    assert unmarked("<p>{% translate 'Fine' %}</p><p>Broken</p>") == ["Broken"]
    assert unmarked('<a title="Open it" href="/">{{ x }}</a>') == ['title="Open it"']
    assert unmarked("{% blocktranslate trimmed %}\n  Fine {{ x }}\n{% endblocktranslate %}") == []
    assert unmarked('<input type="hidden" name="action" value="approve">') == []
    assert unmarked('<button type="submit" name="then" value="save">{{ x }}</button>') == []
    assert unmarked('<input type="submit" value="Save">') == ['value="Save"']
    assert unmarked("{{ site_url }}/admin/playbooks/risk/{{ r.pk }}/change/") == []
    assert unmarked("<p>CrisisDesk · SEV{{ n }}</p>") == []
    assert unmarked('<dt>{% translate "Severity" %}:</dt>') == ['{% translate "Severity" %}:']
    assert unmarked("<p>{% blocktranslate %}Hi {{ n }}{% endblocktranslate %}.</p>") == [
        "{% endblocktranslate %}."
    ]
    assert unmarked('{% translate "Title" %} · CrisisDesk') == []
