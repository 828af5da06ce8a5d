"""The admin offers no Save or Delete on what nobody may change there (a frozen
playbook version, a message approved or gone out), links the war room, and the
desk has a favicon."""

from __future__ import annotations

import pytest

from incidents import comms
from tests.factories import UserFactory
from tests.incidents.test_comms import approved, desk, draft  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def test_it_offers_no_save_on_a_frozen_playbook_version(root, desk):  # noqa: F811
    frozen = desk["incident"].playbook
    page = root.get(f"/admin/playbooks/playbook/{frozen.pk}/change/").content.decode()
    assert 'name="_save"' not in page and "/delete/" not in page
    from playbooks import services

    draft_version = services.playbook_new_version(playbook=frozen)
    page = root.get(f"/admin/playbooks/playbook/{draft_version.pk}/change/").content.decode()
    assert 'name="_save"' in page


def test_it_offers_save_on_a_draft_message_only(root, desk):  # noqa: F811
    message = draft(desk)
    url = f"/admin/incidents/message/{message.pk}/change/"
    assert 'name="_save"' in root.get(url).content.decode()
    message = approved(desk)
    comms.message_send(message=message, actor=desk["eszter"])
    page = root.get(f"/admin/incidents/message/{message.pk}/change/").content.decode()
    assert 'name="_save"' not in page and "/delete/" not in page


def test_it_links_the_war_room_and_has_a_favicon(root):
    index = root.get("/admin/").content.decode()
    assert 'href="/"' in index and "/incidents/trends/" in index and "/api/docs/" in index
    assert "favicon.svg" in index
    icon = root.get("/favicon.ico")
    assert icon.status_code == 301 and icon["Location"].endswith("crisisdesk/favicon.svg")
