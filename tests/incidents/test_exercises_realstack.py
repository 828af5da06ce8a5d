"""A short exercise on real parts: a Celery worker and beat on the configured broker, the
test database and an SMTP server. Its injects, seconds apart, arrive on time and once,
and the public comments one brings land in the listening inbox once, as drill comments."""

from __future__ import annotations

import pytest

from incidents import exercises
from incidents.exercises import InjectDraft
from incidents.listening.models import Mention
from incidents.models import Incident, Inject, Timer

pytestmark = pytest.mark.services


def inject_mails(smtp):
    return [r for r in smtp.received if r.message["X-CrisisDesk-Reason"] == "inject"]


def test_a_short_exercise_delivers_each_inject_on_time_and_once(
    team, make_playbook, worker_factory, beat_factory, smtp_server
):
    roles, people = team["roles"], team["people"]
    worker = worker_factory(smtp=smtp_server)
    beat_factory()
    exercise = exercises.exercise_plan(
        playbook=make_playbook(delays=(600, 600, 600)),
        title="Gyakorlat: kiesés a kiárusítás alatt",
        facilitator=people["exec"],
        participants=[
            (people["noa"], roles["crisis-manager"]),
            (people["eszter"], roles["communications-lead"]),
        ],
        injects=[
            InjectDraft(2, "A fizetés nem működik", "Minden kártyás fizetés hibát ad."),
            InjectDraft(
                4,
                "Újságíró hív",
                "Megerősítik?",
                roles=[roles["communications-lead"]],
                mentions=[
                    {"channel": "twitter", "text": "Nem működik a fizetés!", "language": "hu"},
                    {"channel": "review", "text": "Charged twice.", "sentiment": "negative"},
                ],
            ),  # fmt: skip
            InjectDraft(6, "A vezérigazgató kérdez", "Két perc, kérem."),
        ],
    )
    exercise = exercises.exercise_start(exercise=exercise, actor=people["exec"])
    t0 = exercise.started_at.timestamp()

    arrived = smtp_server.wait_for(5, timeout=40)
    assert len(arrived) == 5, worker.log()
    by_title = {}
    for r in arrived:
        assert r.message["X-CrisisDesk-Reason"] == "inject"
        assert r.message["Subject"].startswith("[DRILL] ")
        by_title.setdefault(r.message["Subject"].split("Exercise inject: ")[1], []).append(r)
    expected = {
        "A fizetés nem működik": (2, {"noa@example.test", "eszter@example.test"}),
        "Újságíró hív": (4, {"eszter@example.test"}),
        "A vezérigazgató kérdez": (6, {"noa@example.test", "eszter@example.test"}),
    }
    for title, (offset, recipients) in expected.items():
        rows = by_title[title]
        assert sorted(to for r in rows for to in r.rcpt_tos) == sorted(recipients), title
        for r in rows:
            # On time: not before its offset, and within start-up jitter after it.
            assert offset <= r.at - t0 < offset + 3, (title, r.at - t0)
    # Exactly once: nothing more comes, counted past the engine's re-send window.
    smtp_server.assert_nothing_more(5, after=t0 + 6)
    assert (
        Timer.objects.filter(incident=exercise.incident, kind="inject", state="fired").count() == 3
    )
    assert Inject.objects.filter(exercise=exercise, fired_at__isnull=True).count() == 0
    # The journalist's inject brought its two comments, once, at its fire time, as new
    # comments of the drill; no real incident came of them.
    journalist = Inject.objects.get(exercise=exercise, position=2)
    comments = list(Mention.objects.filter(source__slug="exercises"))
    assert len(comments) == 2
    assert {(m.incident_id, m.state, m.received_at) for m in comments} == {
        (exercise.incident_id, "new", journalist.fired_at)
    }
    assert not Incident.objects.filter(drill=False).exists()
    # Nobody outside the exercise was e-mailed for it, roll call included.
    assert not {to for r in smtp_server.ignored for to in r.rcpt_tos} - {
        "noa@example.test",
        "eszter@example.test",
    }
