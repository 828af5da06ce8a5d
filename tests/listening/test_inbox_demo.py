"""The demo desk's inbox: seeded by `crisisdesk up` (seed_demo), once."""

from __future__ import annotations

from collections import Counter

import pytest
from django.core.management import call_command

from incidents.listening.models import Mention
from incidents.models import Message, Timer

pytestmark = pytest.mark.django_db


def test_the_demo_inbox_shows_every_state_and_is_seeded_once(
    settings, tmp_path, broker_calls, client
):
    settings.VAR_DIR = tmp_path
    call_command("seed_demo")
    states = Counter(
        Mention.objects.filter(source__slug="social-demo").values_list("state", flat=True)
    )
    assert states == {"needs_reply": 2, "replied": 1, "no_reply": 1, "dismissed": 1, "new": 1}
    replied = Mention.objects.get(state="replied")
    assert replied.reply.status == Message.Status.PUBLISHED and replied.reply.language == "he"
    assert Timer.objects.filter(mention__state="needs_reply", state="pending").count() >= 2
    counts = (Mention.objects.count(), Message.objects.count(), Timer.objects.count())
    call_command("seed_demo")
    assert (Mention.objects.count(), Message.objects.count(), Timer.objects.count()) == counts
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="eszter"))
    page = client.get("/mentions/?mine=on").content.decode()
    assert page.count("data-mention=") == 1 and "Charged TWICE" in page
