from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from incidents import acklinks, postmortem, rollcall, services
from incidents.models import Incident, Message, PostMortemRevision
from incidents.selectors import incident_messages, incidents_visible_to
from playbooks.models import Channel, RotationMember, UserProfile


@require_http_methods(["GET", "POST"])
def acknowledge_link(request: HttpRequest, token: str) -> HttpResponse:
    """The one-click acknowledge link from an on-call e-mail.

    GET only shows a confirmation page: mail filters open links to scan them,
    and a scanner must never acknowledge. The POST does it, once, through
    ``services.incident_acknowledge_by_link``. What a link may show is decided
    there and in ``acklinks``: a dead link (forged, cut, expired, used, or its
    holder may no longer see the incident) gets one and the same 404 page.
    """
    if request.method == "POST":
        link = services.incident_acknowledge_by_link(token=token)
    else:
        link = acklinks.ack_link_read(token)
    context = {"link": link, "incident": link.incident, "zone": None}
    if link.state == acklinks.TAKEN:
        # Who acknowledged and when, in the time of the person the link was sent to.
        context["zone"] = _holder_zone(link.notification.recipient)
    status = 404 if link.state == acklinks.DEAD else 200
    return render(request, "incidents/ack.html", context, status=status)


@require_http_methods(["GET", "POST"])
def rollcall_link(request: HttpRequest, token: str) -> HttpResponse:
    """A roll-call link from an activation e-mail: *joining* or *can't*.

    GET only shows a confirmation page (mail scanners open links); the POST
    answers, once, through ``services.role_answer_by_link``. A dead link (forged,
    cut, expired, used, its holder relieved or no longer allowed to see the
    incident) gets one and the same 404 page.
    """
    if request.method == "POST":
        link = services.role_answer_by_link(token=token)
    else:
        link = rollcall.rollcall_link_read(token)
    status = 404 if link.state == rollcall.DEAD else 200
    context = {"link": link, "incident": link.incident, "assignment": link.assignment}
    return render(request, "incidents/rollcall.html", context, status=status)


def _holder_zone(user) -> str:
    """The link holder's time zone: their own (profile), else their on-call
    rotation's, else the site's."""
    chosen = UserProfile.objects.filter(user=user).values_list("time_zone", flat=True).first()
    if chosen:
        return chosen
    membership = (
        RotationMember.objects.filter(user=user)
        .select_related("rotation")
        .order_by("position", "pk")
        .first()
    )
    return membership.rotation.timezone if membership else settings.TIME_ZONE


@login_required
@permission_required(("incidents.view_incident", "incidents.view_message"), raise_exception=True)
def communications(request: HttpRequest, reference: str) -> HttpResponse:
    """The communications timeline of an incident, for whoever may read its messages
    (the war room's panel links here, and this page back to it)."""
    incident = get_object_or_404(incidents_visible_to(request.user), reference=reference)
    filters = {k: request.GET.get(k, "") for k in ("audience", "channel", "status")}
    messages = list(incident_messages(incident=incident, **filters))
    audiences = {m.audience.slug: m.audience.name for m in incident_messages(incident=incident)}
    return render(
        request,
        "incidents/communications.html",
        {
            "incident": incident,
            # Not "messages": base.html shows the messages framework's notices by that name.
            "comms_messages": messages,
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
    # The timeline shows a page at a time; a page number out of range shows the last.
    context = postmortem.report_context(report, timeline_page=request.GET.get("timeline", 1))
    context["revisions"] = (
        list(report.postmortem.revisions.select_related("published_by"))
        if report.postmortem
        else []
    )
    return render(request, "incidents/postmortem.html", context)


@_perm("incidents.view_postmortem")
def postmortem_markdown(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _visible_incident(request, reference)
    # Streamed: the timeline is read from the database a chunk at a time.
    chunks = postmortem.report_markdown_chunks(postmortem.report_build(incident))
    response = StreamingHttpResponse(chunks, content_type="text/markdown; charset=utf-8")
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
