"""The people of the desk: each person's phone, language and time zone.

A person's choices live in ``UserProfile`` and are copied into their session
when they sign in or change them, so ``PreferencesMiddleware`` applies them to
every request without a query: pages, forms and the e-mails a request writes
speak the person's language and show times in their zone, with the zone named.
"""

from __future__ import annotations

import zoneinfo
from functools import lru_cache

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone, translation

from playbooks.models import UserProfile

SESSION_LANGUAGE = "crisisdesk_language"
SESSION_TIME_ZONE = "crisisdesk_time_zone"


@lru_cache(maxsize=1)
def time_zone_names() -> list[str]:
    """Every IANA zone name this machine knows, sorted (the "posix/" and "right/"
    aliases and the bare legacy names left out)."""
    return sorted(
        name
        for name in zoneinfo.available_timezones()
        if "/" in name and not name.startswith(("posix/", "right/", "Etc/", "SystemV/"))
    ) + ["UTC"]


def profile_for(user) -> UserProfile:
    profile, _created = UserProfile.objects.get_or_create(user=user)
    return profile


def person_locale(user) -> tuple[str, str]:
    """The language and time zone to write to ``user`` in (e-mails): their own
    choices, else the desk's (settings.LANGUAGE_CODE, settings.TIME_ZONE)."""
    relation = UserProfile.user.field.remote_field  # the person's side: user.profile
    if isinstance(user, UserProfile.user.field.related_model) and relation.is_cached(user):
        # Fetched with the person (select_related("profile")); None when they have none.
        profile = relation.get_cached_value(user)
        language, zone = (profile.language, profile.time_zone) if profile else ("", "")
    else:
        language, zone = UserProfile.objects.filter(user=user).values_list(
            "language", "time_zone"
        ).first() or ("", "")
    return language or settings.LANGUAGE_CODE, zone or settings.TIME_ZONE


def preferences_save(*, user, language: str, time_zone: str, phone: str) -> UserProfile:
    """Validate and keep a person's choices; every door (page, admin) agrees on the rules."""
    with transaction.atomic():
        profile, _created = UserProfile.objects.select_for_update().get_or_create(user=user)
        profile.language = language
        profile.time_zone = time_zone
        profile.phone = phone
        profile.full_clean()
        profile.save()
    return profile


def remember(request: HttpRequest, profile: UserProfile) -> None:
    """Copy a person's choices into their session and apply them to this request."""
    request.session[SESSION_LANGUAGE] = profile.language
    request.session[SESSION_TIME_ZONE] = profile.time_zone
    apply(request)


def apply(request: HttpRequest) -> None:
    language = request.session.get(SESSION_LANGUAGE) or ""
    if language in dict(settings.LANGUAGES):
        translation.activate(language)
        request.LANGUAGE_CODE = language
    zone = request.session.get(SESSION_TIME_ZONE) or ""
    try:
        timezone.activate(zoneinfo.ZoneInfo(zone)) if zone else timezone.deactivate()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        timezone.deactivate()


@receiver(user_logged_in)
def _signed_in(sender, request, user, **kwargs) -> None:
    if request is not None and hasattr(request, "session"):
        profile = UserProfile.objects.filter(user=user).first()
        if profile is not None:
            remember(request, profile)


class PreferencesMiddleware:
    """After authentication: the signed-in person's language and time zone, from
    the session (no query); anonymous visitors keep the browser's language and
    the desk's zone."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        if hasattr(request, "session"):
            apply(request)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
