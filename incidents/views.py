from __future__ import annotations

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required, permission_required
from django.core import signing
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from incidents import acklinks, postmortem, services
from incidents.models import Incident, Message, Notification, PostMortemRevision
from incidents.selectors import incident_messages, incidents_visible_to
from playbooks.models import Channel, RotationMember


@require_http_methods(["GET", "POST"])
def acknowledge_link(request: HttpRequest, token: str) -> HttpResponse:
    """The one-click acknowledge link from an on-call e-mail.

    GET only shows a confirmation page: mail filters open links to scan them,
    and a scanner must never acknowledge. The POST does it, once: the link is
    bound to its notification (so to one person and one incident), signed,
    expires, and is burned by a conditional update in the same transaction as
    the acknowledgement.
    """
    try:
        message_id = acklinks.ack_token_read(token)
    except signing.SignatureExpired:
        return _page(request, "expired", status=410)
    except signing.BadSignature:
        return _page(request, "invalid", status=404)
    notification = (
        Notification.objects.select_related("incident", "recipient", "incident__acknowledged_by")
        .filter(message_id=message_id, incident__isnull=False, recipient__isnull=False)
        .first()
    )
    if notification is None:
        return _page(request, "invalid", status=404)
    incident = notification.incident
    if notification.ack_token_used_at is not None:
        return _page(request, "used", notification=notification, status=410)
    if incident.status != Incident.Status.OPEN:
        return _page(request, "not_waiting", notification=notification)
    if request.method == "GET":
        return _page(request, "confirm", notification=notification)

    with transaction.atomic():
        # Lock order: incident, then notification (incidents/escalation.py).
        Incident.objects.select_for_update().get(pk=incident.pk)
        burned = Notification.objects.filter(
            pk=notification.pk, ack_token_used_at__isnull=True
        ).update(ack_token_used_at=timezone.now())
        if burned != 1:
            return _page(request, "used", notification=notification, status=410)
        acknowledged = services.incident_acknowledge(
            incident=incident, actor=notification.recipient, via="e-mail link"
        )
    incident.refresh_from_db()
    return _page(request, "done" if acknowledged else "not_waiting", notification=notification)


def _page(request, state: str, *, notification: Notification | None = None, status: int = 200):
    incident = notification.incident if notification else None
    zone = None
    if incident is not None and state in ("used", "not_waiting"):
        holder = notification.recipient
        if incidents_visible_to(holder).filter(pk=incident.pk).exists():
            zone = _holder_zone(holder)
        else:
            incident = None  # the holder may no longer see it: say nothing of it
    context = {"state": state, "notification": notification, "incident": incident, "zone": zone}
    return render(request, "incidents/ack.html", context, status=status)


def _holder_zone(user) -> str:
    """The link holder's time zone: their on-call rotation's, else the site's."""
    membership = (
        RotationMember.objects.filter(user=user)
        .select_related("rotation")
        .order_by("position", "pk")
        .first()
    )
    return membership.rotation.timezone if membership else settings.TIME_ZONE


@staff_member_required
def communications(request: HttpRequest, reference: str) -> HttpResponse:
    """The communications timeline of an incident, for the crisis team."""
    incident = get_object_or_404(incidents_visible_to(request.user), reference=reference)
    filters = {k: request.GET.get(k, "") for k in ("audience", "channel", "status")}
    messages = list(incident_messages(incident=incident, **filters))
    audiences = {m.audience.slug: m.audience.name for m in incident_messages(incident=incident)}
    return render(
        request,
        "incidents/communications.html",
        {
            "incident": incident,
            "messages": messages,
            "filters": filters,
            "audiences": sorted(audiences.items(), key=lambda kv: kv[1]),
            "channels": Channel.choices,
            "statuses": Message.Status.choices,
        },
    )


# ------------------------------------------------------------------ post-mortems


def _perm(permission: str):
    """Anonymous people are sent to log in; logged-in people without the permission get 403."""

    def wrap(view):
        return login_required(permission_required(permission, raise_exception=True)(view))

    return wrap


def _visible_incident(request: HttpRequest, reference: str) -> Incident:
    """The incident, or 404 when it does not exist or this person may not see it."""
    return get_object_or_404(incidents_visible_to(request.user), reference=reference)


@_perm("incidents.view_postmortem")
def postmortem_page(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _visible_incident(request, reference)
    report = postmortem.report_build(incident)
    context = postmortem.report_context(report)
    context["revisions"] = (
        list(report.postmortem.revisions.select_related("published_by"))
        if report.postmortem
        else []
    )
    return render(request, "incidents/postmortem.html", context)


@_perm("incidents.view_postmortem")
def postmortem_markdown(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _visible_incident(request, reference)
    text = postmortem.report_markdown(postmortem.report_build(incident))
    response = HttpResponse(text, content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{incident.reference}-postmortem.md"'
    return response


@_perm("incidents.view_postmortem")
def postmortem_pdf(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _visible_incident(request, reference)
    try:
        pdf = postmortem.report_pdf(postmortem.report_build(incident))
    except postmortem.PdfUnavailable as exc:
        return HttpResponse(str(exc), status=503, content_type="text/plain; charset=utf-8")
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{incident.reference}-postmortem.pdf"'
    return response


@_perm("incidents.view_postmortem")
def postmortem_revision(request: HttpRequest, reference: str, number: int) -> HttpResponse:
    incident = _visible_incident(request, reference)
    revision = get_object_or_404(
        PostMortemRevision.objects.select_related("published_by"),
        postmortem__incident=incident,
        number=number,
    )
    return render(
        request,
        "incidents/postmortem_revision.html",
        {"incident": incident, "revision": revision},
    )


@require_POST
@_perm("incidents.add_postmortem")
def postmortem_start(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _visible_incident(request, reference)
    postmortem.postmortem_start(incident=incident, actor=request.user)
    return redirect("incidents:postmortem", reference=incident.reference)


@_perm("incidents.view_postmortem")
def trends(request: HttpRequest) -> HttpResponse:
    figures = postmortem.trends(incidents_visible_to(request.user))
    return render(request, "incidents/trends.html", {"trends": figures})
