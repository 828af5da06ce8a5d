"""The status page's subscription pages: subscribe, confirm, unsubscribe (no sign-in).

The forms post without a CSRF token on purpose: the status pages are cached and
shared by everyone, so they carry none, and there is no session to ride on. What a
forged post can do is bounded: a subscription request only e-mails a confirmation
link to the address typed (rate-limited per address and per client), a
confirmation needs the signed link, and unsubscribing needs the signed link too
(RFC 8058 asks mail programs to POST it without cookies).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from crisisdesk.clientip import client_address
from incidents import statuspage, sublinks, subscribers
from incidents.forms import SubscribeForm
from incidents.selectors import public_incidents


def _render(request: HttpRequest, template: str, context: dict, status: int = 200) -> HttpResponse:
    language, query = statuspage.page_language(request), statuspage.page_query(request)
    with translation.override(language):
        response = render(
            request,
            template,
            {**statuspage.page_context(language, query), **context},
            status=status,
        )
    response["Cache-Control"] = "no-store"
    return response


def _client(request: HttpRequest) -> str:
    return client_address(request) or "unknown"


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def subscribe(request: HttpRequest) -> HttpResponse:
    language = statuspage.page_language(request)
    if request.method != "POST":
        form = SubscribeForm(
            initial={"language": language, "incident": request.GET.get("incident", "")[:32]}
        )
        return _render(request, "status/subscribe.html", {"form": form})
    form = SubscribeForm(request.POST)
    incident = None
    if form.is_valid() and form.cleaned_data["incident"]:
        incident = public_incidents().filter(reference=form.cleaned_data["incident"]).first()
        if incident is None:  # hidden and made-up alike
            form.add_error(None, translation.gettext("There is no public incident by that name."))
    if not form.is_valid():
        return _render(request, "status/subscribe.html", {"form": form}, status=400)
    try:
        subscribers.subscription_request(
            email=form.cleaned_data["email"],
            language=form.cleaned_data["language"],
            incident=incident,
            client=_client(request),
        )
    except subscribers.RateLimited:
        return _render(request, "status/subscribe_done.html", {"limited": True}, status=429)
    # The same answer whether the address was subscribed already or not.
    return _render(request, "status/subscribe_done.html", {"limited": False})


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a button (a mail scanner opening the link subscribes nobody); POST
    subscribes. A forged, cut or expired link says only that it is not valid."""
    data = sublinks.confirm_token_read(token)
    if data is None:
        return _render(request, "status/link_invalid.html", {}, status=400)
    if request.method != "POST":
        return _render(request, "status/confirm.html", {"data": data})
    subscription = subscribers.subscription_confirm(
        email=data["e"], language=data["l"], incident_id=data["i"]
    )
    if subscription is None:
        return _render(request, "status/link_invalid.html", {}, status=400)
    return _render(request, "status/confirmed.html", {"subscription": subscription})


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a button; POST (the page's, or a mail program's RFC 8058 one-click
    ``List-Unsubscribe=One-Click``) unsubscribes, and says so however often it comes."""
    found = sublinks.unsubscribe_token_read(token)
    if found is None:
        return _render(request, "status/link_invalid.html", {}, status=400)
    if request.method != "POST":
        return _render(request, "status/unsubscribe.html", {})
    contact_id, email = found
    subscribers.subscription_cancel(contact_id=contact_id, email=email)
    return _render(request, "status/unsubscribed.html", {})
