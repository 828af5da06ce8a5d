"""Times as people read them in e-mails and reports, with the zone named.

``format_when(dt, tz)`` is the one place a moment becomes text such as
"2026-11-25 14:05 UTC" or "2026-11-25 15:05 CET". ``tz`` is a zone (a name
like "Europe/Budapest" or a tzinfo); by default the desk's zone
(settings.TIME_ZONE). A per-person zone is passed in by the caller.

The date is written as the active language writes it: ISO in English (no
day/month ambiguity across readers), "2026. 11. 25." in Hungarian,
"25/11/2026" in Greek and "25.11.2026" in Hebrew; 24-hour times everywhere.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, tzinfo

from django.utils import timezone, translation

# strftime patterns per language (date, then the time); English and anything unknown: ISO.
DATE_FORMATS = {
    "hu": "%Y. %m. %d. %H:%M",
    "el": "%d/%m/%Y %H:%M",
    "he": "%d.%m.%Y %H:%M",
}
ISO = "%Y-%m-%d %H:%M"


def zone(tz: str | tzinfo | None = None) -> tzinfo:
    if tz is None:
        return timezone.get_default_timezone()
    if isinstance(tz, str):
        return zoneinfo.ZoneInfo(tz)
    return tz


def format_when(
    dt: datetime | None, tz: str | tzinfo | None = None, *, seconds: bool = False
) -> str:
    """``dt`` in ``tz`` as "YYYY-MM-DD HH:MM[:SS] ZONE"; "" for None.

    The zone is its abbreviation ("UTC", "CET", "EEST"); where the zone database has
    none it is the offset from UTC ("UTC+04"), never a bare "+04".
    """
    if dt is None:
        return ""
    local = dt.astimezone(zone(tz))
    name = local.tzname() or ""
    if not name or name[0] in "+-":
        offset = local.strftime("%z")  # +0400, +0530
        name = f"UTC{offset[:3]}" + (f":{offset[3:]}" if offset[3:] != "00" else "")
    language = (translation.get_language() or "en").split("-")[0]
    pattern = DATE_FORMATS.get(language, ISO) + (":%S" if seconds else "")
    return f"{local.strftime(pattern)} {name}"
