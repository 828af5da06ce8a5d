"""Who holds a role when: order, hand-offs in local time across DST, overrides."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone

from playbooks.models import RotationMember, RotationOverride
from playbooks.oncall import (
    handoff_at,
    oncall_holder,
    oncall_now,
    rotation_holder,
    rotation_shifts,
)
from tests.factories import CrisisRoleFactory, OnCallRotationFactory, UserFactory

pytestmark = pytest.mark.django_db
BUDAPEST = ZoneInfo("Europe/Budapest")
JERUSALEM = ZoneInfo("Asia/Jerusalem")


def local(zone, *args):
    return dt.datetime(*args, tzinfo=zone)


def rotation_of(*names, zone="UTC", start=None, hours=24, **kwargs):
    rotation = OnCallRotationFactory(
        timezone=zone,
        starts_at=start or dt.datetime(2026, 1, 5, 9, tzinfo=ZoneInfo(zone)),
        handoff_hours=hours,
        **kwargs,
    )
    users = [UserFactory(username=n, first_name=n.title()) for n in names]
    for position, user in enumerate(users, start=1):
        RotationMember.objects.create(rotation=rotation, user=user, position=position)
    return rotation, users


def holder(rotation, at):
    user = rotation_holder(rotation=rotation, at=at)
    return user.username if user else None


def test_it_takes_turns_in_order_and_wraps_around():
    rotation, _ = rotation_of("ann", "ben", "cem")
    day = dt.timedelta(days=1)
    start = rotation.starts_at
    assert [holder(rotation, start + k * day) for k in range(5)] == [
        "ann",
        "ben",
        "cem",
        "ann",
        "ben",
    ]


def test_it_hands_off_exactly_at_the_boundary():
    rotation, _ = rotation_of("ann", "ben")
    boundary = rotation.starts_at + dt.timedelta(days=1)
    assert holder(rotation, boundary - dt.timedelta(microseconds=1)) == "ann"
    assert holder(rotation, boundary) == "ben"


def test_nobody_holds_it_before_the_start_without_members_or_when_inactive():
    rotation, _ = rotation_of("ann")
    assert holder(rotation, rotation.starts_at - dt.timedelta(seconds=1)) is None
    empty, _ = rotation_of()
    assert holder(empty, empty.starts_at + dt.timedelta(hours=1)) is None
    inactive, _ = rotation_of("zed", is_active=False)
    assert holder(inactive, inactive.starts_at + dt.timedelta(hours=1)) is None


@pytest.mark.parametrize(
    ("zone", "before_change", "after_change"),
    [
        # Budapest: clocks go forward on 29 March 2026, back on 25 October 2026.
        (BUDAPEST, (2026, 3, 28), (2026, 3, 30)),
        (BUDAPEST, (2026, 10, 24), (2026, 10, 26)),
        # Jerusalem: forward on Friday 27 March 2026, back on 25 October 2026.
        (JERUSALEM, (2026, 3, 26), (2026, 3, 28)),
        (JERUSALEM, (2026, 10, 24), (2026, 10, 26)),
    ],
)
def test_it_hands_off_daily_at_the_same_local_time_across_daylight_saving(
    zone, before_change, after_change
):
    rotation, _ = rotation_of(
        "ann", "ben", zone=zone.key, start=local(zone, 2026, 1, 1, 9), hours=24
    )
    for day in (before_change, after_change):
        nine = local(zone, *day, 9)
        assert holder(rotation, nine - dt.timedelta(minutes=1)) != holder(rotation, nine)
        assert holder(rotation, nine) == holder(rotation, nine + dt.timedelta(hours=23, minutes=59))
    # The hand-off instants are 09:00 local on both sides, i.e. different UTC hours.
    k_before = (dt.date(*before_change) - dt.date(2026, 1, 1)).days
    k_after = (dt.date(*after_change) - dt.date(2026, 1, 1)).days
    assert handoff_at(rotation, k_before).astimezone(zone).hour == 9
    assert handoff_at(rotation, k_after).astimezone(zone).hour == 9
    assert handoff_at(rotation, k_before).hour != handoff_at(rotation, k_after).hour


def test_it_hands_off_weekly_on_monday_morning_across_the_spring_change():
    rotation, _ = rotation_of(
        "ann", "ben", zone="Europe/Budapest", start=local(BUDAPEST, 2026, 3, 23, 9), hours=168
    )
    # 23 March (CET, UTC+1) to 30 March (CEST, UTC+2): the week is 167 real hours.
    assert holder(rotation, local(BUDAPEST, 2026, 3, 30, 8, 59)) == "ann"
    assert holder(rotation, local(BUDAPEST, 2026, 3, 30, 9, 0)) == "ben"
    assert handoff_at(rotation, 1) - rotation.starts_at == dt.timedelta(hours=167)


def test_it_hands_off_after_the_gap_when_the_local_time_does_not_exist():
    rotation, _ = rotation_of(
        "ann", "ben", zone="Europe/Budapest", start=local(BUDAPEST, 2026, 3, 28, 2, 30), hours=24
    )
    # 02:30 on 29 March does not exist in Budapest: the hand-off is at 03:30 CEST.
    instant = handoff_at(rotation, 1)
    assert instant == dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC)
    assert holder(rotation, instant - dt.timedelta(seconds=1)) == "ann"
    assert holder(rotation, instant) == "ben"


def test_an_override_replaces_the_scheduled_holder_only_inside_its_range():
    rotation, (ann, _ben) = rotation_of("ann", "ben")
    stand_in = UserFactory(username="sub")
    start = rotation.starts_at + dt.timedelta(hours=2)
    end = start + dt.timedelta(hours=3)
    RotationOverride.objects.create(rotation=rotation, user=stand_in, starts_at=start, ends_at=end)
    assert holder(rotation, start - dt.timedelta(seconds=1)) == "ann"
    assert holder(rotation, start) == "sub"
    assert holder(rotation, end - dt.timedelta(seconds=1)) == "sub"
    assert holder(rotation, end) == "ann"


def test_the_override_created_last_wins_where_two_overlap():
    rotation, _ = rotation_of("ann")
    first, second = UserFactory(username="first"), UserFactory(username="second")
    t = rotation.starts_at + dt.timedelta(hours=1)
    RotationOverride.objects.create(
        rotation=rotation,
        user=first,
        starts_at=t,
        ends_at=t + dt.timedelta(hours=4),
        created_at=timezone.now() - dt.timedelta(hours=1),
    )
    RotationOverride.objects.create(
        rotation=rotation,
        user=second,
        starts_at=t + dt.timedelta(hours=1),
        ends_at=t + dt.timedelta(hours=2),
    )
    assert holder(rotation, t) == "first"
    assert holder(rotation, t + dt.timedelta(hours=1, minutes=30)) == "second"
    assert holder(rotation, t + dt.timedelta(hours=3)) == "first"


def test_a_role_asks_its_rotations_by_priority():
    role = CrisisRoleFactory()
    primary, _ = rotation_of(zone="UTC", role=role, priority=1)  # no members
    backup, _ = rotation_of("bob", role=role, priority=2)
    assert oncall_holder(role=role, at=backup.starts_at + dt.timedelta(hours=1)).username == "bob"
    RotationMember.objects.create(rotation=primary, user=UserFactory(username="pri"), position=1)
    assert oncall_holder(role=role, at=backup.starts_at + dt.timedelta(hours=1)).username == "pri"


def test_it_answers_for_now_when_no_instant_is_given():
    rotation, _ = rotation_of("ann", "ben")
    with time_machine.travel(rotation.starts_at + dt.timedelta(days=1, hours=1), tick=False):
        assert rotation_holder(rotation=rotation).username == "ben"
        assert {r.pk: u.username if u else None for r, u in oncall_now()}[rotation.role_id] == "ben"


def test_on_call_now_runs_a_fixed_number_of_queries(django_assert_max_num_queries):
    for _ in range(6):
        rotation_of("a" + UserFactory().username, "b" + UserFactory().username)
    # Roles, rotations, members, their users and profiles, overrides, their users and
    # profiles: seven, whatever the number of roles.
    with django_assert_max_num_queries(7):
        result = oncall_now(at=timezone.now())
    assert len(result) == 6 and all(user is not None for _role, user in result)


def test_it_lists_shifts_with_overrides_cut_in():
    rotation, _ = rotation_of("ann", "ben")
    start = rotation.starts_at
    sub = UserFactory(username="sub")
    RotationOverride.objects.create(
        rotation=rotation,
        user=sub,
        starts_at=start + dt.timedelta(hours=20),
        ends_at=start + dt.timedelta(hours=30),
    )
    shifts = rotation_shifts(rotation=rotation, start=start, end=start + dt.timedelta(days=2))
    assert [
        (s.user.username, s.is_override, (s.ends_at - s.starts_at).total_seconds() / 3600)
        for s in shifts
    ] == [
        ("ann", False, 20),
        ("sub", True, 10),
        ("ben", False, 18),
    ]
