"""Team activation and roll call: every role holder is e-mailed at once, answers joining or
can't through a one-click link, is chased once, and the role passes on along its rotation."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core import mail
from guardian.shortcuts import remove_perm

from incidents import escalation, notify, rollcall, services
from incidents.models import Incident, Notification, RoleAssignment, TimelineEntry, Timer
from incidents.permissions import ASSIGNED_PERM
from playbooks.models import OnCallRotation, RotationMember
from tests.factories import UserFactory
from tests.pages import same_page, without_csrf

pytestmark = pytest.mark.django_db

ANSWER = RoleAssignment.Answer


@pytest.fixture
def opened(team, make_playbook, broker_calls):
    """An incident whose communications lead (Eszter) has Eleni next in her rotation."""
    rotation = OnCallRotation.objects.get(members__user=team["people"]["eszter"])
    RotationMember.objects.create(rotation=rotation, user=team["people"]["eleni"], position=2)
    playbook = make_playbook(roll_call_minutes=5)
    incident = services.incident_open(
        title="Ügyféladatok kiszivárogtak", summary="1,200 card numbers exposed", playbook=playbook
    )
    return incident


def comms_lead(incident) -> RoleAssignment:
    return incident.assignments.select_related("user", "role").get(
        role__slug="communications-lead", relieved_at__isnull=True
    )


def activation(assignment) -> Notification:
    return Notification.objects.get(role_assignment=assignment, reason="activation")


def link(notification, answer) -> str:
    return f"/incidents/rollcall/{rollcall.rollcall_token(notification.message_id, answer)}/"


def fire(timer):
    with time_machine.travel(timer.due_at, tick=False):
        return escalation.timer_fire(timer_id=timer.pk)


def roll_call_timer(assignment, level) -> Timer:
    return Timer.objects.get(assignment=assignment, kind="roll_call", level=level)


# ------------------------------------------------------------------ activation


def test_it_e_mails_every_role_holder_at_once_when_the_incident_opens(opened):
    current = list(opened.assignments.filter(relieved_at__isnull=True).select_related("user"))
    assert len(current) == 4  # the roles the playbook names (steps and escalation levels)
    for assignment in current:
        n = activation(assignment)
        assert n.recipient == assignment.user and n.status == "queued"
        timer = roll_call_timer(assignment, 1)
        assert timer.state == "pending"
        assert timer.due_at == assignment.assumed_at + dt.timedelta(minutes=5)
        assert assignment.answer == ANSWER.PENDING
    called = opened.timeline.filter(kind="roll_call", data__step="called")
    assert called.count() == 4


def test_the_activation_e_mail_names_the_role_the_incident_and_the_links(opened, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assignment = comms_lead(opened)
    n = activation(assignment)
    assert notify.notification_deliver(notification_id=n.pk).endswith("sent")
    (message,) = mail.outbox
    assert message.extra_headers["Message-ID"] == n.message_id
    assert f"You are Communications lead: {opened.title}" in message.subject
    body = message.body
    assert f"You are the Communications lead for {opened.reference}." in body
    assert "1,200 card numbers exposed" in body and "SEV2" in body
    assert f"/incidents/{opened.reference}/" in body  # the war room
    joining, cant = link(n, "joining"), link(n, "cant")
    assert joining.split("/")[-2] != cant.split("/")[-2]
    html = message.alternatives[0][0]
    for text in (body, html):
        assert "/incidents/rollcall/" in text
    # The links in the e-mail are the ones that work.
    urls = [line for line in body.splitlines() if "/incidents/rollcall/" in line]
    assert len(urls) == 2
    assert rollcall.rollcall_link_read(urls[0].split("/")[-2]).answer == "joining"
    assert rollcall.rollcall_link_read(urls[1].split("/")[-2]).answer == "cant"


def test_a_later_hand_over_e_mails_the_new_holder_and_stops_the_old_roll_call(opened, team):
    old = comms_lead(opened)
    new = services.role_assign(
        incident=opened, role=old.role, user=team["people"]["exec"], actor=None
    )
    assert activation(new).recipient == team["people"]["exec"]
    assert roll_call_timer(old, 1).state == "cancelled"
    assert roll_call_timer(new, 1).state == "pending"


def test_a_hand_over_on_a_resolved_incident_calls_nobody_in(opened, team):
    services.incident_resolve(incident=opened, actor=None)
    opened.refresh_from_db()
    role = comms_lead(opened).role
    new = services.role_assign(incident=opened, role=role, user=team["people"]["exec"])
    assert not Notification.objects.filter(role_assignment=new).exists()
    assert not Timer.objects.filter(assignment=new).exists()


# ------------------------------------------------------------------ the link page


def test_a_get_only_asks_for_confirmation(client, opened):
    assignment = comms_lead(opened)
    url = link(activation(assignment), "joining")
    for _ in range(2):
        page = client.get(url)
        assert page.status_code == 200
        assert "Yes, I'm joining" in page.content.decode()
    assignment.refresh_from_db()
    assert assignment.answer == ANSWER.PENDING


def test_joining_is_recorded_once_and_ends_the_roll_call(client, opened):
    assignment = comms_lead(opened)
    n = activation(assignment)
    page = client.post(link(n, "joining"))
    assert page.status_code == 200
    assert "You have joined" in page.content.decode()
    assignment.refresh_from_db()
    assert assignment.answer == ANSWER.JOINING and assignment.answered_at is not None
    assert roll_call_timer(assignment, 1).state == "cancelled"
    entry = opened.timeline.get(kind="roll_call", data__step="answered")
    assert entry.actor == assignment.user and "is joining as Communications lead" in entry.text
    dead = client.get("/incidents/rollcall/garbage/")
    for again in (client.post(link(n, "joining")), client.post(link(n, "cant"))):
        assert again.status_code == 404 and same_page(again, dead)
    assignment.refresh_from_db()
    assert assignment.answer == ANSWER.JOINING


def test_a_forged_or_expired_link_gets_the_neutral_page(client, opened):
    n = activation(comms_lead(opened))
    url = link(n, "joining")
    dead = client.get("/incidents/rollcall/garbage/")
    assert dead.status_code == 404 and "does not work" in dead.content.decode()
    assert opened.reference not in dead.content.decode()
    tampered = url[:-3] + ("A" if url[-3] != "A" else "B") + url[-2:]
    assert without_csrf(client.post(tampered)) == without_csrf(dead)
    # An acknowledge token is not a roll-call token (another salt).
    from incidents import acklinks

    assert client.get(f"/incidents/rollcall/{acklinks.ack_token(n.message_id)}/").status_code == 404
    later = dt.datetime.now(dt.UTC) + rollcall.ROLL_CALL_MAX_AGE + dt.timedelta(minutes=1)
    with time_machine.travel(later):
        expired = client.post(url)
    assert expired.status_code == 404 and same_page(expired, dead)
    assert comms_lead(opened).answer == ANSWER.PENDING


def test_a_holder_who_may_not_see_the_incident_is_told_nothing(client, opened, team):
    assignment = comms_lead(opened)
    url = link(activation(assignment), "joining")
    Incident.objects.filter(pk=opened.pk).update(confidential=True)
    # Relieved (so no longer on the confidential incident) and handed the role again by hand
    # would be a new assignment: this link is for the old one, and its holder sees nothing.
    services.role_relieve(incident=opened, role=assignment.role)
    dead = client.get("/incidents/rollcall/garbage/")
    for page in (client.get(url), client.post(url)):
        assert same_page(page, dead)


def test_a_hidden_incident_answers_exactly_like_a_forged_link(client, opened, team):
    """Still the holder, but the incident became invisible to them: identical to forged."""
    assignment = comms_lead(opened)
    url = link(activation(assignment), "cant")
    Incident.objects.filter(pk=opened.pk).update(confidential=True)
    remove_perm(ASSIGNED_PERM, assignment.user, opened)  # e.g. withdrawn in the admin
    dead = client.get("/incidents/rollcall/garbage/")
    for page in (client.get(url), client.post(url)):
        assert same_page(page, dead)
    assert comms_lead(opened).answer == ANSWER.PENDING


# ------------------------------------------------------------------ can't


def test_cant_relieves_the_holder_and_offers_the_role_to_the_next_in_the_rotation(
    client, opened, team
):
    eszter = comms_lead(opened)
    page = client.post(link(activation(eszter), "cant"))
    assert page.status_code == 200
    assert "offered to Ελένη" in page.content.decode()
    eszter.refresh_from_db()
    assert eszter.answer == ANSWER.CANT and eszter.relieved_at is not None
    assert eszter.offered_to == team["people"]["eleni"]
    eleni = comms_lead(opened)
    assert eleni.user == team["people"]["eleni"] and eleni.answer == ANSWER.PENDING
    assert activation(eleni).recipient == team["people"]["eleni"]
    assert roll_call_timer(eszter, 1).state == "cancelled"
    assert roll_call_timer(eleni, 1).state == "pending"
    steps = list(opened.timeline.filter(kind="roll_call").values_list("data__step", flat=True))
    assert steps[-3:] == ["answered", "offered", "called"]


def test_cant_with_nobody_left_leaves_the_role_unheld_and_says_so(client, opened, team):
    eszter = comms_lead(opened)
    client.post(link(activation(eszter), "cant"))
    eleni = comms_lead(opened)
    client.post(link(activation(eleni), "cant"))  # Eszter already said can't: nobody left
    assert not opened.assignments.filter(
        role__slug="communications-lead", relieved_at__isnull=True
    ).exists()
    last = opened.timeline.filter(kind="roll_call").latest("at", "pk")
    assert "nobody else is left to ask" in last.text and last.data["offered_to"] is None


# ------------------------------------------------------------------ no answer


def test_no_answer_is_chased_once_then_the_role_is_offered_on(opened, team):
    eszter = comms_lead(opened)
    first = roll_call_timer(eszter, 1)
    assert "chased" in fire(first)
    eszter.refresh_from_db()
    assert eszter.chased_at is not None and eszter.relieved_at is None
    chase = Notification.objects.get(role_assignment=eszter, reason="roll_call_chase")
    second = roll_call_timer(eszter, 2)
    assert second.due_at == first.due_at + dt.timedelta(minutes=5)
    # The engine runs at least once: firing again changes nothing.
    assert "not pending" in fire(first)
    Timer.objects.filter(pk=first.pk).update(state="pending", fired_at=None)
    fire(first)
    assert (
        Notification.objects.filter(role_assignment=eszter, reason="roll_call_chase").count() == 1
    )
    assert Timer.objects.filter(assignment=eszter, kind="roll_call").count() == 2
    assert opened.timeline.filter(kind="roll_call", data__step="chased").count() == 1
    # The chase carries live links too.
    assert rollcall.rollcall_link_read(
        rollcall.rollcall_token(chase.message_id, "joining")
    ).state == ("live")

    assert "offered to" in fire(second)
    eszter.refresh_from_db()
    assert eszter.relieved_at is not None and eszter.offered_to == team["people"]["eleni"]
    assert eszter.answer == ANSWER.PENDING and eszter.answered_at is None
    assert comms_lead(opened).user == team["people"]["eleni"]
    Timer.objects.filter(pk=second.pk).update(state="pending", fired_at=None)
    assert "answered or over" in fire(second)
    assert opened.assignments.filter(role__slug="communications-lead").count() == 2


def test_no_answer_with_nobody_else_keeps_the_holder_unanswered(opened, team):
    tech = opened.assignments.get(role__slug="crisis-manager", relieved_at__isnull=True)
    fire(roll_call_timer(tech, 1))
    assert "nobody else" in fire(roll_call_timer(tech, 2))
    tech.refresh_from_db()
    assert tech.relieved_at is None and tech.answer == ANSWER.PENDING
    last = opened.timeline.filter(kind="roll_call").latest("at", "pk")
    assert "did not answer" in last.text and "nobody else is left" in last.text


def test_an_answer_in_the_window_stops_the_chase(client, opened):
    eszter = comms_lead(opened)
    client.post(link(activation(eszter), "joining"))
    timer = roll_call_timer(eszter, 1)
    Timer.objects.filter(pk=timer.pk).update(state="pending")
    assert "answered or over" in fire(timer)
    assert not Notification.objects.filter(role_assignment=eszter, reason="roll_call_chase")


def test_a_chase_answered_before_delivery_is_not_sent(client, opened, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    eszter = comms_lead(opened)
    fire(roll_call_timer(eszter, 1))
    chase = Notification.objects.get(role_assignment=eszter, reason="roll_call_chase")
    # Its first attempt failed and it waits for a retry when the holder answers.
    Notification.objects.filter(pk=chase.pk).update(
        status="queued", sent_at=None, next_attempt_at=dt.datetime.now(dt.UTC)
    )
    mail.outbox.clear()
    client.post(link(activation(eszter), "joining"))
    assert "cancelled" in notify.notification_deliver(notification_id=chase.pk)
    assert mail.outbox == []


def test_next_in_rotation_skips_the_inactive_and_goes_round(team):
    from playbooks.oncall import rotation_next

    role = team["roles"]["technical-lead"]
    rotation = OnCallRotation.objects.get(role=role)
    gone = UserFactory(username="gone", email="gone@example.test", is_active=False)
    last = UserFactory(username="last", email="last@example.test")
    RotationMember.objects.create(rotation=rotation, user=gone, position=2)
    RotationMember.objects.create(rotation=rotation, user=last, position=3)
    assert rotation_next(role=role, after=team["people"]["eleni"]) == last
    assert rotation_next(role=role, after=last) == team["people"]["eleni"]
    assert rotation_next(role=role, after=last, exclude={team["people"]["eleni"].pk}) is None


def test_the_window_comes_from_the_playbook_and_defaults_to_ten_minutes(team, broker_calls):
    incident = services.incident_open(title="Ad hoc")
    assignment = incident.assignments.get()
    timer = roll_call_timer(assignment, 1)
    assert timer.due_at - assignment.assumed_at == dt.timedelta(minutes=10)
    assert TimelineEntry.objects.filter(incident=incident, kind="roll_call").count() == 1


# ------------------------------------------------------------------ post-mortem


def test_the_post_mortem_has_a_roll_call_section(client, opened, team):
    from incidents import postmortem

    manager = opened.assignments.get(role__slug="crisis-manager")
    n = activation(manager)
    with time_machine.travel(n.created_at + dt.timedelta(minutes=2), tick=False):
        services.role_answer_by_link(token=rollcall.rollcall_token(n.message_id, "joining"))
    eszter = comms_lead(opened)
    client.post(link(activation(eszter), "cant"))
    tech = opened.assignments.get(role__slug="technical-lead")
    fire(roll_call_timer(tech, 1))
    report = postmortem.report_build(opened)
    rows = {(r.assignment.role.slug, r.assignment.user.username): r for r in report.roll_call}
    joined = rows[("crisis-manager", "noa")]
    assert joined.answer == "joining" and joined.answered_after == dt.timedelta(minutes=2)
    assert joined.emailed_at == n.created_at
    cant = rows[("communications-lead", "eszter")]
    assert cant.answer == "cant" and cant.offered_to == "Ελένη Παπαδοπούλου"
    assert rows[("communications-lead", "eleni")].answer == "none"
    chased = rows[("technical-lead", "eleni")]
    assert chased.answer == "none" and chased.chased_at is not None
    markdown = postmortem.report_markdown(report)
    assert "## Roll call" in markdown and "offered to Ελένη Παπαδοπούλου" in markdown
    html = postmortem.report_html(report)
    assert 'id="roll-call"' in html and 'data-answer="cant"' in html
