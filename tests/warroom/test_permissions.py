"""The war room's permission matrix: the API's personas on every page, partial and action.

A confidential incident someone may not see answers exactly like a reference
that does not exist (404, same page), and never shows on the dashboard or list.
"""

from __future__ import annotations

import re

import pytest

from incidents import services
from incidents.models import Incident, Task, TimelineEntry
from tests.incidents.test_api import CAN_READ

pytestmark = pytest.mark.django_db

MADE_UP = "INC-2099-9999"
GETS = ("", "timeline/", "do/contain/", "do/resolve/", "do/close/", "do/reopen/")
CSRF = re.compile(r'value="[A-Za-z0-9]{64}"')


def _same_page(a, b) -> bool:
    """Two answers alike, but for the per-request CSRF token."""
    return a.status_code == b.status_code and CSRF.sub("", a.content.decode()) == CSRF.sub(
        "", b.content.decode()
    )


@pytest.fixture
def live_matrix(matrix):
    """The API's matrix, with both incidents reopened so they are active again."""
    for incident in (matrix["public"], matrix["secret"]):
        services.incident_reopen(incident=incident, actor=None)
    return matrix


@pytest.mark.parametrize(
    "persona", ["anonymous", "outsider", "executive", "assigned", "unassigned", "manager"]
)
def test_permission_matrix_warroom_pages(client, live_matrix, persona):
    user = live_matrix["people"][persona]
    if user is not None:
        client.force_login(user)
    may_read, may_see_secret = CAN_READ[persona]
    public, secret = live_matrix["public"], live_matrix["secret"]
    for incident, visible in ((public, True), (secret, may_see_secret)):
        for suffix in GETS:
            real = client.get(f"/incidents/{incident.reference}/{suffix}")
            made_up = client.get(f"/incidents/{MADE_UP}/{suffix}")
            if user is None:
                assert real.status_code == 302 and "/accounts/login/" in real["Location"]
            elif not may_read:
                assert real.status_code == made_up.status_code == 403, (persona, suffix)
            elif visible and suffix.startswith("do/") and persona == "executive":
                assert real.status_code == 403, (persona, suffix)  # may read, not act
            elif visible:
                assert real.status_code == 200, (persona, incident.reference, suffix)
            else:
                assert real.status_code == 404, (persona, suffix)
                assert _same_page(real, made_up), (persona, suffix)
                assert secret.title not in real.content.decode()
    # Lists: the dashboard, the list, its search and filters.
    for path in (
        "/",
        "/incidents/",
        "/incidents/?q=Vezérigazgatói",
        "/incidents/?status=open",
        f"/incidents/?q={secret.reference}",
    ):
        response = client.get(path)
        if user is None:
            assert response.status_code == 302
            continue
        if not may_read:
            assert response.status_code == 403
            continue
        assert response.status_code == 200
        # The rows only: a search box echoes what was typed.
        html = "".join(re.findall(r"<tbody>.*?</tbody>", response.content.decode(), re.S))
        assert (secret.reference in html) == may_see_secret, (persona, path)
        assert ("Vezérigazgatói" in html) == may_see_secret, (persona, path)
        if "q=" not in path:
            assert public.reference in html, (persona, path)


@pytest.mark.parametrize(
    "persona", ["anonymous", "outsider", "executive", "assigned", "unassigned", "manager"]
)
def test_permission_matrix_warroom_actions(client, live_matrix, persona):
    user = live_matrix["people"][persona]
    if user is not None:
        client.force_login(user)
    may_read, may_see_secret = CAN_READ[persona]
    may_act = persona in ("assigned", "unassigned", "manager")
    outsider = live_matrix["people"]["outsider"]
    for incident, visible in (
        (live_matrix["public"], True),
        (live_matrix["secret"], may_see_secret),
    ):
        base = f"/incidents/{incident.reference}/"
        task = Task.objects.filter(incident=incident, status="open").first()
        role = task.role
        notes_before = TimelineEntry.objects.filter(incident=incident, kind="note").count()
        posts = {
            "acknowledge": client.post(base + "do/acknowledge/"),
            "severity": client.post(base + "do/severity/", {"severity": "3"}),
            "task": client.post(base + f"tasks/{task.pk}/", {"outcome": "done"}),
            "note": client.post(base + "notes/", {"text": "from the matrix"}),
            "role": client.post(base + "roles/", {"role": role.pk, "user": outsider.pk}),
        }
        made_up = {
            "acknowledge": client.post(f"/incidents/{MADE_UP}/do/acknowledge/"),
            "task": client.post(f"/incidents/{MADE_UP}/tasks/{task.pk}/", {"outcome": "done"}),
            "note": client.post(f"/incidents/{MADE_UP}/notes/", {"text": "x"}),
        }
        incident.refresh_from_db()
        task.refresh_from_db()
        notes_after = TimelineEntry.objects.filter(incident=incident, kind="note").count()
        for name, response in posts.items():
            if user is None:
                expected = 302
            elif not may_read:
                expected = 403
            elif not visible:
                expected = 404
            elif not may_act:
                expected = 403
            else:
                expected = 302
            assert response.status_code == expected, (persona, incident.reference, name)
            if name in made_up and user is not None and may_read and not visible:
                assert _same_page(response, made_up[name]), (persona, name)
        changed = user is not None and visible and may_act
        assert (incident.status == Incident.Status.ACKNOWLEDGED) == changed, persona
        assert (incident.severity == 3) == changed, persona
        assert (task.status == "done") == changed, persona
        assert (notes_after == notes_before + 1) == changed, persona
        holds = incident.assignments.filter(user=outsider, relieved_at__isnull=True).exists()
        assert holds == changed, persona


# ------------------------------------------------------------------ communications

COMMS_PERSONAS = (
    "anonymous",
    "outsider",
    "responder",
    "communications",
    "legal",
    "executive",
    "manager",
    "assigned-communications",
)
# What each may do with messages, as the API allows it (incidents/api.py MessageViewSet).
COMMS_MAY = {
    "add": {"communications", "manager", "assigned-communications"},
    "change": {"communications", "manager", "assigned-communications"},
    "approve": {"legal", "manager"},
}
COMMS_ACTIONS = {  # action -> (what it needs, what it posts)
    "submit": ("change", {}),
    "approve": ("approve", {}),
    "return": ("approve", {"comment": "Not yet."}),
    "send": ("change", {}),
    "publish": ("change", {"where": "https://status.example.test"}),
    "schedule": ("change", {"at": "2099-01-01T10:00"}),
    "correct": ("add", {"body": "A correction."}),
}


@pytest.fixture
def comms_matrix(live_matrix):
    from tests.warroom.conftest import member

    people = live_matrix["people"]
    people["responder"] = people["unassigned"]
    people["communications"] = member("comms", "Communications")
    people["legal"] = member("legal", "Legal")
    people["assigned-communications"] = member("comms-on-it", "Communications")
    secret = live_matrix["secret"]
    role = secret.assignments.first().role
    services.role_assign(incident=secret, role=role, user=people["assigned-communications"])
    return live_matrix


def _comms_record(incident):
    from incidents.models import Message, MessageRevision

    messages = Message.objects.filter(incident=incident)
    return (
        sorted(messages.values_list("pk", "status", "body")),
        MessageRevision.objects.filter(message__incident=incident).count(),
        TimelineEntry.objects.filter(incident=incident, kind="message").count(),
    )


@pytest.mark.parametrize("persona", COMMS_PERSONAS)
def test_permission_matrix_warroom_communications(client, comms_matrix, persona):
    from incidents.models import Message

    user = comms_matrix["people"][persona]
    if user is not None:
        client.force_login(user)
    may_read = persona not in ("anonymous", "outsider")
    may_see_secret = persona in ("manager", "assigned-communications")
    may = {power for power, who in COMMS_MAY.items() if persona in who}
    public, secret = comms_matrix["public"], comms_matrix["secret"]
    template = public.playbook.templates.first()
    for incident, visible in ((public, True), (secret, may_see_secret)):
        message = Message.objects.filter(incident=incident).first()
        base = f"/incidents/{incident.reference}/messages/"
        fake = f"/incidents/{MADE_UP}/messages/"
        record = _comms_record(incident)
        requests = [
            ("GET", "new/", None, "add"),
            ("GET", f"{message.pk}/", None, "read"),
            ("POST", f"{message.pk}/", {"subject": "", "body": "Changed words."}, "change"),
            *[
                ("POST", f"{message.pk}/do/{name}/", data, need)
                for name, (need, data) in COMMS_ACTIONS.items()
            ],
            ("POST", "new/", {"template": template.pk}, "add"),
        ]
        for method, suffix, data, need in requests:
            call = client.get if method == "GET" else client.post
            real = call(base + suffix, data or {})
            made_up = call(fake + suffix, data or {})
            where = (persona, incident.reference, method, suffix)
            if user is None:
                assert real.status_code == 302 and "/accounts/login/" in real["Location"], where
            elif not may_read:
                assert real.status_code == made_up.status_code == 403, where
            elif not visible:
                assert real.status_code == 404, where
                assert _same_page(real, made_up), where
                assert secret.title not in real.content.decode(), where
            elif need == "read" or need in may:
                assert real.status_code in (200, 302), where
            else:
                assert real.status_code == 403, where
        if not (visible and may):
            assert _comms_record(incident) == record, (persona, incident.reference)
    # Another incident's message, or a made-up one, under a visible incident: 404 alike.
    if may_read:
        hidden = Message.objects.filter(incident=secret).first()
        for suffix in (f"{hidden.pk}/", f"{hidden.pk}/do/submit/", "987654/"):
            call = client.get if suffix.endswith("/") and "do/" not in suffix else client.post
            assert call(f"/incidents/{public.reference}/messages/{suffix}").status_code == 404
