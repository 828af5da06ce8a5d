"""Times in e-mails and reports name their zone."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.utils import translation

from crisisdesk.timefmt import format_when

MOMENT = dt.datetime(2026, 11, 25, 14, 5, 9, tzinfo=dt.UTC)


def test_it_names_the_zone_and_defaults_to_the_desk_zone(settings):
    settings.TIME_ZONE = "UTC"
    assert format_when(MOMENT) == "2026-11-25 14:05 UTC"
    assert format_when(MOMENT, seconds=True) == "2026-11-25 14:05:09 UTC"
    settings.TIME_ZONE = "Europe/Budapest"
    assert format_when(MOMENT) == "2026-11-25 15:05 CET"


def test_it_takes_a_zone_name_or_tzinfo_and_shows_an_offset_where_there_is_no_name():
    assert format_when(MOMENT, "Europe/Athens") == "2026-11-25 16:05 EET"
    assert format_when(MOMENT, zoneinfo.ZoneInfo("Asia/Jerusalem")) == "2026-11-25 16:05 IST"
    assert format_when(MOMENT, "Asia/Dubai") == "2026-11-25 18:05 UTC+04"
    assert format_when(MOMENT, "Asia/Kathmandu") == "2026-11-25 19:50 UTC+05:45"
    assert format_when(None) == ""


@pytest.mark.parametrize(
    "language,expected",
    [
        ("en", "2026-03-05 14:07 UTC"),
        ("hu", "2026. 03. 05. 14:07 UTC"),
        ("el", "05/03/2026 14:07 UTC"),
        ("he", "05.03.2026 14:07 UTC"),
    ],
)
def test_the_date_is_written_as_the_language_writes_it(language, expected):
    moment = dt.datetime(2026, 3, 5, 14, 7, 9, tzinfo=dt.UTC)
    with translation.override(language):
        assert format_when(moment, "UTC") == expected
        assert format_when(moment, "UTC", seconds=True) == expected.replace(":07", ":07:09")
