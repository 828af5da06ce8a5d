"""The starter library and the demo desk that `crisisdesk up` loads."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.core.management import call_command

from playbooks.models import MessageTemplate, Phase, Playbook, StakeholderGroup
from playbooks.oncall import oncall_now
from playbooks.seed import demo_seed, starter_load

pytestmark = pytest.mark.django_db
KEYS = {
    "data-breach",
    "social-media-storm",
    "negative-review-wave",
    "service-outage",
    "product-recall",
}


def test_the_starter_library_holds_five_complete_playbooks():
    result = starter_load()
    assert {p.key for p in result.created} == KEYS
    assert result.roles_created == 7 and result.groups_created == 6
    for playbook in Playbook.objects.filter(status=Playbook.Status.PUBLISHED):
        assert {s.phase for s in playbook.steps.all()} == set(Phase.values), playbook.key
        audiences = {t.audience.slug for t in playbook.templates.all()}
        assert {"customers", "employees", "media"} <= audiences, playbook.key
        assert playbook.escalation_levels.count() == 3
        assert playbook.first_statement_minutes <= 60
        assert playbook.cadences.exists()
        for template in playbook.templates.all():
            template.clean()  # every placeholder is one an incident can fill


def test_every_template_for_customers_employees_and_media_speaks_four_languages():
    starter_load()
    templates = MessageTemplate.objects.filter(
        playbook__status=Playbook.Status.PUBLISHED,
        audience__slug__in=("customers", "employees", "media"),
    )
    languages: dict[tuple, set] = {}
    for t in templates.select_related("playbook", "audience"):
        key = (t.playbook.key, t.name, t.audience.slug, t.channel)
        languages.setdefault(key, set()).add(t.language)
    # every such template of the five playbooks, and the reply templates of the social-media
    # storm and the negative-review wave
    assert len(languages) == 22
    assert {k[:2] for k in languages if k[3] == "reply"} == {
        ("social-media-storm", "Reply to a comment"),
        ("negative-review-wave", "Reply to a review"),
    }
    for key, found in languages.items():
        assert found == {"en", "he", "hu", "el"}, key
    # Written in their language, not copied: no two languages of a template share a body.
    for key in languages:
        bodies = [
            t.body for t in templates.filter(playbook__key=key[0], name=key[1], channel=key[3])
        ]
        assert len(set(bodies)) == 4, key


def row_counts():
    return {m._meta.label: m.objects.count() for m in apps.get_models()}


def test_loading_twice_changes_nothing(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    first_login = demo_seed()
    counts = row_counts()
    second_login = demo_seed()
    assert row_counts() == counts
    assert second_login == first_login
    again = starter_load()
    assert again.created == [] and len(again.unchanged) == 5


def test_the_printed_demo_login_works(client, settings, tmp_path, capsys):
    settings.VAR_DIR = tmp_path
    call_command("seed_demo")
    out = capsys.readouterr().out
    username, password = out.strip().rsplit(": ", 1)[1].split(" / ")
    assert client.login(username=username, password=password)
    assert client.get("/admin/").status_code == 200


def test_every_role_has_someone_on_call_in_the_demo(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    demo_seed()
    holders = oncall_now()
    assert len(holders) == 7
    assert all(user is not None for _role, user in holders)


def test_the_demo_contacts_cover_every_group_and_language(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    demo_seed()
    for group in StakeholderGroup.objects.all():
        assert group.contacts.count() >= 5
    languages = set(StakeholderGroup.objects.values_list("contacts__language", flat=True))
    assert {"he", "hu", "el"} <= languages


def test_the_demo_has_one_finished_drill_with_its_post_mortem(settings, tmp_path, client):
    from incidents.demo import DRILL_TITLE, demo_drill
    from incidents.models import Incident

    settings.VAR_DIR = tmp_path
    demo_seed()
    assert demo_drill() is not None
    assert demo_drill() is None  # idempotent
    [drill] = Incident.objects.filter(title=DRILL_TITLE)
    assert drill.drill and drill.status == "resolved" and drill.first_statement_at
    assert drill.postmortem.summary and drill.postmortem.action_items.count() == 1
    login = demo_seed()
    assert client.login(username=login.username, password=login.password)
    page = client.get(f"/incidents/{drill.reference}/postmortem/")
    assert page.status_code == 200 and "<strong>Drill</strong>" in page.content.decode()


def test_the_demo_has_one_planned_exercise_with_the_starter_injects(settings, tmp_path):
    from incidents.demo import EXERCISE_TITLE, demo_exercise

    settings.VAR_DIR = tmp_path
    demo_seed()
    exercise = demo_exercise()
    assert demo_exercise() is None  # idempotent
    assert exercise.title == EXERCISE_TITLE and exercise.status == "planned"
    assert exercise.playbook.key == "social-media-storm"
    assert exercise.injects.count() >= 6 and exercise.participants.count() == 5
    assert exercise.injects.filter(roles__slug="spokesperson").exists()
