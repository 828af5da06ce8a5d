"""The translation catalogues are complete, current and compiled.

Each of Hebrew, Hungarian and Greek covers every marked string (nothing
untranslated, nothing fuzzy), its compiled .mo is the one committed (the desk
reads the .mo, so a forgotten compile would show English), and no string marked
in the code is missing from the catalogues.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = ("he", "hu", "el")


def _po(code: str) -> Path:
    return ROOT / "locale" / code / "LC_MESSAGES" / "django.po"


def _msgids(po: Path) -> set[str]:
    """The msgids of a catalogue (joined continuation lines), without the header."""
    ids, current, inside = set(), [], False
    for line in po.read_text(encoding="utf-8").splitlines():
        if line.startswith("msgid "):
            current, inside = [line[6:]], True
        elif inside and line.startswith('"'):
            current.append(line)
        else:
            if inside:
                ids.add("".join(part.strip().strip('"') for part in current))
            inside = False
    ids.discard("")
    return ids


@pytest.mark.parametrize("code", LANGUAGES)
def test_every_string_is_translated_and_none_is_fuzzy(code):
    result = subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", "/dev/null", str(_po(code))],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    stats = result.stderr.strip()
    assert re.fullmatch(r"\d+ translated messages\.", stats), f"{code}: {stats}"


@pytest.mark.parametrize("code", LANGUAGES)
def test_the_committed_compiled_catalogue_is_the_current_one(code, tmp_path):
    fresh = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(fresh), str(_po(code))], check=True)
    shipped = _po(code).with_suffix(".mo")
    assert shipped.exists(), f"{shipped} is missing: run msgfmt (see CONTRIBUTING in README)"
    assert shipped.read_bytes() == fresh.read_bytes(), (
        f"{shipped} is older than its .po: recompile it "
        f"(msgfmt --check -o {shipped.relative_to(ROOT)} {_po(code).relative_to(ROOT)})"
    )


def test_no_marked_string_is_missing_from_the_catalogues(tmp_path):
    """makemessages on a copy of the sources finds nothing the catalogues lack."""
    copy = tmp_path / "src"
    copy.mkdir()
    for name in ("crisisdesk", "incidents", "playbooks", "templates", "locale"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "manage.py", copy / "manage.py")
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "he", "--no-obsolete"],
        cwd=copy,
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "crisisdesk.settings",
             "CRISISDESK_DATA_DIR": str(tmp_path / "data")},
    )  # fmt: skip
    wanted = _msgids(copy / "locale" / "he" / "LC_MESSAGES" / "django.po")
    for code in LANGUAGES:
        missing = wanted - _msgids(_po(code))
        assert not missing, f"{code} lacks {len(missing)} strings, e.g. {sorted(missing)[:5]}"
