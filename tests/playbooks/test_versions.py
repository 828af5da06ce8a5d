import pytest
from django.core.exceptions import ValidationError

from playbooks import services
from playbooks.models import Playbook
from tests.factories import (
    EscalationLevelFactory,
    MessageTemplateFactory,
    PlaybookFactory,
    PlaybookStepFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def make_publishable(**kwargs) -> Playbook:
    playbook = PlaybookFactory(**kwargs)
    PlaybookStepFactory(playbook=playbook, position=1)
    PlaybookStepFactory(playbook=playbook, position=2)
    MessageTemplateFactory(playbook=playbook)
    EscalationLevelFactory(playbook=playbook, position=1)
    return playbook


def test_it_publishes_a_draft_and_stamps_the_time():
    playbook = services.playbook_publish(playbook=make_publishable())
    assert playbook.status == Playbook.Status.PUBLISHED
    assert playbook.published_at is not None
    assert playbook.last_reviewed_on is not None


def test_it_refuses_to_publish_a_playbook_nobody_would_be_paged_by():
    playbook = PlaybookFactory()
    PlaybookStepFactory(playbook=playbook)
    with pytest.raises(ValidationError, match="no escalation level"):
        services.playbook_publish(playbook=playbook)
    playbook.refresh_from_db()
    assert playbook.status == Playbook.Status.DRAFT


def test_it_keeps_the_old_version_intact_when_a_new_one_is_published():
    v1 = services.playbook_publish(playbook=make_publishable(key="breach", title="Breach"))
    v2 = services.playbook_new_version(playbook=v1, actor=UserFactory())
    assert (v2.key, v2.version, v2.status) == ("breach", 2, Playbook.Status.DRAFT)
    assert v2.steps.count() == 2 and v2.templates.count() == 1
    assert v2.escalation_levels.count() == 1

    step = v2.steps.get(position=1)
    step.title = "Changed in v2"
    step.save()
    services.playbook_publish(playbook=v2)

    v1.refresh_from_db()
    assert v1.status == Playbook.Status.RETIRED
    assert v1.steps.get(position=1).title != "Changed in v2"
    assert Playbook.objects.filter(key="breach", status="published").get().version == 2


def test_it_returns_the_existing_draft_instead_of_a_second_one():
    v1 = services.playbook_publish(playbook=make_publishable(key="outage"))
    first = services.playbook_new_version(playbook=v1)
    again = services.playbook_new_version(playbook=v1)
    assert first.pk == again.pk


def test_it_refuses_to_edit_a_published_version():
    v1 = services.playbook_publish(playbook=make_publishable())
    with pytest.raises(ValidationError, match="cannot be changed"):
        services.playbook_ensure_editable(v1)
