"""The public status page: no sign-in, nothing but public statements.

``/status/`` lists the active incidents with a public statement (and those resolved
within ``CRISISDESK_STATUS_KEEP_DAYS``), newest first, then the older ones under
*History*; ``/status/<reference>/`` shows one incident's whole public history;
``/status/feed.atom`` and ``/status/<reference>/feed.atom`` are the same as Atom.

What may appear is decided in one place, ``selectors.public_statements`` (neither a
confidential incident nor a drill, sent or published, to a public audience). An
incident without a public statement answers exactly like a made-up reference.
Each incident is named by ``Incident.public_heading``: its public title, else a
neutral title from its category; never the title the desk uses inside.

A correction is shown beside what it corrects: every text that went out stays
readable, the corrected ones struck through with when they were corrected. Each
reader gets the statement's variant in their language when it has one (``?lang=``,
else the browser's Accept-Language), the page in that language, right to left in
Hebrew.

Every answer is rendered once per version and language (incidents/statuscache.py)
and carries an ETag and Last-Modified from that version, so a conditional GET costs
a cache read and answers 304. The pages hold nothing personal (no session, no
CSRF token: the subscription form posts to a view that needs none), so one
rendering serves everyone reading the same language.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.cache import get_conditional_response, patch_vary_headers
from django.utils.feedgenerator import Atom1Feed
from django.utils.html import escape, linebreaks
from django.utils.http import http_date
from django.utils.translation import gettext as _
from django.utils.translation import pgettext
from django.views.decorators.http import require_safe

from crisisdesk.timefmt import format_when
from incidents import comms, statuscache
from incidents.models import Incident, Message
from incidents.selectors import public_incidents, public_statements

# ------------------------------------------------------------------ what is shown


@dataclass
class Text:
    """One text that went out: the original, a correction, or a correction of that."""

    message: Message
    language: str
    subject: str
    body: str
    at: datetime
    corrected_at: datetime | None = None  # set on every text a later one corrects


@dataclass
class Statement:
    """A public statement with its corrections, oldest first: the last is current."""

    incident: Incident
    texts: list[Text] = field(default_factory=list)

    @property
    def root(self) -> Message:
        return self.texts[0].message

    @property
    def current(self) -> Text:
        return self.texts[-1]

    @property
    def published_at(self) -> datetime:
        return self.texts[0].at

    @property
    def updated_at(self) -> datetime:
        return self.texts[-1].at

    @property
    def corrected(self) -> bool:
        return len(self.texts) > 1


@dataclass
class PublicIncident:
    incident: Incident
    statements: list[Statement]  # newest first

    @property
    def updated_at(self) -> datetime:
        return max(s.updated_at for s in self.statements)

    @property
    def public_status(self) -> str:
        """The incident's state in the words the public reads."""
        status = self.incident.status
        if status in (Incident.Status.RESOLVED, Incident.Status.CLOSED):
            return pgettext("public incident status", "Resolved")
        if status == Incident.Status.CONTAINED:
            return pgettext("public incident status", "Contained, monitoring")
        return pgettext("public incident status", "Investigating")

    @property
    def ended_at(self) -> datetime | None:
        return self.incident.resolved_at or self.incident.closed_at


def keep_days() -> int:
    return settings.CRISISDESK_STATUS_KEEP_DAYS


def _text(message: Message, language: str) -> Text:
    code, subject, body = comms.message_variant(message, language)
    # The greeting is filled per reader in e-mails; on a page everyone reads it.
    everyone = pgettext("greeting on the public status page", "all")
    return Text(
        message=message,
        language=code,
        subject=comms.personalise(subject, everyone),
        body=comms.personalise(body, everyone),
        at=message.sent_at,
    )


def public_history(*, language: str, reference: str | None = None) -> list[PublicIncident]:
    """The incidents with public statements (one, with ``reference``), newest change
    first, each statement with its corrections beside it, in ``language`` where the
    statement has it. Two queries, whatever the number of statements."""
    incidents = public_incidents()
    if reference is not None:
        incidents = incidents.filter(reference=reference)
    by_pk = {incident.pk: incident for incident in incidents}
    if not by_pk:
        return []
    messages = list(
        public_statements()
        .filter(incident_id__in=by_pk)
        .select_related("audience")
        .order_by("sent_at", "pk")
    )
    shown = {m.pk for m in messages}
    root_of: dict[int, int] = {}
    statements: dict[int, Statement] = {}
    for message in messages:  # oldest first: what a message corrects came before it
        if message.corrects_id in shown:
            root = root_of[message.corrects_id]
            root_of[message.pk] = root
            texts = statements[root].texts
            texts[-1].corrected_at = message.sent_at
            texts.append(_text(message, language))
        else:
            root_of[message.pk] = message.pk
            statements[message.pk] = Statement(
                incident=by_pk[message.incident_id], texts=[_text(message, language)]
            )
    grouped: dict[int, list[Statement]] = defaultdict(list)
    for statement in statements.values():
        grouped[statement.incident.pk].append(statement)
    result = [
        PublicIncident(
            incident=by_pk[pk],
            statements=sorted(items, key=lambda s: (s.updated_at, s.root.pk), reverse=True),
        )
        for pk, items in grouped.items()
    ]
    result.sort(key=lambda p: (p.updated_at, p.incident.pk), reverse=True)
    return result


def split_current(items: list[PublicIncident], now: datetime) -> tuple[list, list]:
    """(shown at the top, history): an incident stays at the top while active and for
    ``keep_days()`` after it was resolved."""
    since = now - timedelta(days=keep_days())
    current, history = [], []
    for item in items:
        ended = item.ended_at
        if item.incident.is_active or ended is None or ended >= since:
            current.append(item)
        else:
            history.append(item)
    return current, history


# ------------------------------------------------------------------ language


def page_language(request: HttpRequest) -> str:
    """``?lang=`` when it names a language of the desk, else the one the desk's language
    switch remembered in a cookie, else the browser's (Accept-Language)."""
    wanted = request.GET.get("lang", "")
    if wanted in dict(settings.LANGUAGES):
        return wanted
    return translation.get_supported_language_variant(
        translation.get_language_from_request(request)
    )


def _switch(language: str) -> list[dict]:
    return [
        {
            "code": code,
            "name": translation.get_language_info(code)["name_local"],
            "current": code == language,
        }
        for code, _name in settings.LANGUAGES
    ]


def page_query(request: HttpRequest) -> str:
    """The language switch travels in links only when the visitor used it."""
    lang = request.GET.get("lang", "")
    return f"?lang={lang}" if lang in dict(settings.LANGUAGES) else ""


# ------------------------------------------------------------------ rendering


def page_context(language: str, query: str) -> dict:
    return {
        "company": settings.COMPANY_NAME,
        "languages": _switch(language),
        "query": query,
        "keep_days": keep_days(),
        "subscribe_url": reverse("status:subscribe"),
    }


def _render_index(language: str, query: str) -> str:
    with translation.override(language):
        current, history = split_current(public_history(language=language), timezone.now())
        return render_to_string(
            "status/index.html",
            {**page_context(language, query), "current": current, "history": history},
        )


def _render_incident(reference: str, language: str, query: str) -> str:
    with translation.override(language):
        found = public_history(language=language, reference=reference)
        if not found:
            return statuscache.NOTHING
        return render_to_string(
            "status/incident.html", {**page_context(language, query), "item": found[0]}
        )


def _not_found(language: str, query: str) -> HttpResponse:
    """The same answer for an incident with nothing public and a made-up reference, in
    the status page's own look (no war room, whoever asks)."""
    with translation.override(language):
        body = render_to_string("status/not_found.html", page_context(language, query))
    return HttpResponseNotFound(body)


def _headless(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """HEAD answers as GET does, headers and Content-Length included, without the body
    (RFC 9110 9.3.2): the WSGI server in front may send whatever body it is given."""
    if request.method == "HEAD":
        response["Content-Length"] = str(len(response.content))
        response.content = b""
    return response


def _answer(
    request: HttpRequest,
    body: str,
    version: statuscache.Version,
    language: str,
    content_type: str,
    query: str = "",
) -> HttpResponse:
    """The page, or 304 when the client has this version; never a page for nothing."""
    if body == statuscache.NOTHING:
        return _headless(request, _not_found(language, query))
    etag = f'"{version.etag}-{language}"'
    last_modified = version.at
    not_modified = get_conditional_response(request, etag=etag, last_modified=last_modified)
    response = not_modified or HttpResponse(body, content_type=content_type)
    response["ETag"] = etag
    response["Last-Modified"] = http_date(last_modified)
    # Revalidate every time: a 304 costs a cache read, and nobody sees a stale page.
    response["Cache-Control"] = "public, no-cache"
    response["Content-Language"] = language
    # The language comes from ?lang=, else the desk's language cookie, else the browser.
    patch_vary_headers(response, ("Accept-Language", "Cookie"))
    return _headless(request, response)


@require_safe
def status_index(request: HttpRequest) -> HttpResponse:
    language, query = page_language(request), page_query(request)
    body, version = statuscache.cached_page(
        ("index", language, query), lambda: _render_index(language, query)
    )
    return _answer(request, body, version, language, "text/html; charset=utf-8", query)


@require_safe
def status_incident(request: HttpRequest, reference: str) -> HttpResponse:
    language, query = page_language(request), page_query(request)
    reference = reference[:32]  # the longest reference: nothing longer is looked up
    body, version = statuscache.cached_page(
        ("incident", language, query, reference),
        lambda: _render_incident(reference, language, query),
    )
    return _answer(request, body, version, language, "text/html; charset=utf-8", query)


# ------------------------------------------------------------------ Atom


def _absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def _tag(suffix: str) -> str:
    """A tag: URI (RFC 4151) of this desk: ids that never change with the page's address."""
    host = urlsplit(settings.SITE_URL).hostname or "localhost"
    return f"tag:{host},2026:crisisdesk/status/{suffix}"


def entry_id(statement: Statement) -> str:
    """The same id for a statement and every correction of it: readers update the
    entry instead of showing a second one."""
    return _tag(f"{statement.incident.reference}/{statement.root.pk}")


def _entry_html(statement: Statement) -> str:
    """The entry's text: the current one, and every corrected one struck through."""
    parts = []
    for text in reversed(statement.texts):
        body = linebreaks(escape(text.body))
        if text.corrected_at is None:
            parts.append(body)
        else:
            parts.append(
                "<p>"
                + escape(
                    _("Corrected %(when)s; it read:") % {"when": format_when(text.corrected_at)}
                )
                + f"</p><del>{body}</del>"
            )
    return "".join(parts)


def _render_feed(language: str, reference: str | None) -> str:
    with translation.override(language):
        items = public_history(language=language, reference=reference)
        if reference is not None and not items:
            return statuscache.NOTHING
        if reference is None:
            title = _("%(company)s status") % {"company": settings.COMPANY_NAME}
            link, self_link, feed_id = (
                reverse("status:index"),
                reverse("status:feed"),
                _tag("all"),
            )
        else:
            incident = items[0].incident
            title = f"{incident.reference}: {incident.public_heading}"
            link = reverse("status:incident", args=[reference])
            self_link = reverse("status:incident_feed", args=[reference])
            feed_id = _tag(reference)
        feed = Atom1Feed(
            title=title,
            link=_absolute(link),
            description="",
            language=language,
            feed_url=_absolute(self_link),
            feed_guid=feed_id,
            # RFC 4287: a feed names an author unless every entry does.
            author_name=settings.COMPANY_NAME,
        )
        for item in items:
            for statement in item.statements:
                current = statement.current
                heading = current.subject or item.incident.public_heading
                if statement.corrected:
                    heading = _("%(title)s (corrected)") % {"title": heading}
                feed.add_item(
                    title=f"{item.incident.reference}: {heading}",
                    link=_absolute(reverse("status:incident", args=[item.incident.reference]))
                    + f"#statement-{statement.root.pk}",
                    description=_entry_html(statement),
                    unique_id=entry_id(statement),
                    unique_id_is_permalink=False,
                    pubdate=statement.published_at,
                    updateddate=statement.updated_at,
                )
        return feed.writeString("utf-8")


@require_safe
def status_feed(request: HttpRequest) -> HttpResponse:
    language = page_language(request)
    body, version = statuscache.cached_page(
        ("feed", language), lambda: _render_feed(language, None)
    )
    return _answer(request, body, version, language, "application/atom+xml; charset=utf-8")


@require_safe
def incident_feed(request: HttpRequest, reference: str) -> HttpResponse:
    language = page_language(request)
    reference = reference[:32]
    body, version = statuscache.cached_page(
        ("feed", language, reference), lambda: _render_feed(language, reference)
    )
    return _answer(request, body, version, language, "application/atom+xml; charset=utf-8")
