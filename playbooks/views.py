from __future__ import annotations

import secrets
from datetime import timedelta

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.translation import gettext as _
from icalendar import Calendar, Event

from playbooks.models import OnCallRotation
from playbooks.oncall import rotation_shifts

FEED_PAST = timedelta(weeks=4)
FEED_FUTURE = timedelta(weeks=26)


def rotation_ical(request: HttpRequest, pk: int, token: str) -> HttpResponse:
    """A rotation's shifts as an iCalendar feed that calendar apps subscribe to.

    Calendar apps cannot log in, so the secret token in the address is the
    credential; a wrong one is a 404, as if the rotation did not exist.
    """
    rotation = get_object_or_404(OnCallRotation.objects.select_related("role"), pk=pk)
    if not secrets.compare_digest(rotation.ical_token, token):
        raise Http404
    now = timezone.now()
    cal = Calendar()
    cal.add("prodid", "-//CrisisDesk//On-call rotation//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", _("On call: %(name)s") % {"name": rotation.name})
    cal.add("x-wr-timezone", rotation.timezone)
    for shift in rotation_shifts(rotation=rotation, start=now - FEED_PAST, end=now + FEED_FUTURE):
        name = shift.user.get_full_name() or shift.user.get_username()
        event = Event()
        kind = "override" if shift.is_override else "shift"
        event.add(
            "uid", f"rotation-{rotation.pk}-{kind}-{shift.starts_at:%Y%m%dT%H%M%SZ}@crisisdesk"
        )
        event.add("dtstamp", now)
        event.add("dtstart", shift.starts_at)
        event.add("dtend", shift.ends_at)
        summary = _("On call: %(role)s — %(name)s") % {"role": rotation.role.name, "name": name}
        if shift.is_override:
            summary += " " + _("(override)")
        event.add("summary", summary)
        event.add("transp", "TRANSPARENT")
        cal.add_component(event)
    response = HttpResponse(cal.to_ical(), content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="oncall-{rotation.pk}.ics"'
    return response
