"""Who holds a crisis role at an instant: on-call rotations, hand-offs and overrides.

Hand-offs follow *local wall-clock time* in the rotation's time zone: hand-off
k happens at local ``starts_at + k × handoff_hours``, converted to an instant
with that zone's offset on that date. A daily 09:00 Europe/Budapest hand-off
is at 09:00 local in winter and in summer, so a shift that spans a
daylight-saving change is an hour shorter or longer in real time.

Two edge cases of wall-clock time, and what we do:
- a local time that does not exist (the spring-forward gap, e.g. 02:30 on the
  last Sunday of March in Budapest) is read with the offset before the change,
  so the hand-off happens at the first instant after the gap;
- a local time that happens twice (fall-back) is the first of the two
  (``fold=0``).
An override covering an instant replaces the scheduled holder; if overrides
overlap, the one created last wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Prefetch
from django.urls import reverse
from django.utils import timezone

from playbooks.models import CrisisRole, OnCallRotation, RotationMember, RotationOverride


@dataclass(frozen=True)
class Shift:
    user: AbstractBaseUser
    starts_at: datetime
    ends_at: datetime
    is_override: bool = False


def _zone(rotation: OnCallRotation) -> ZoneInfo:
    return ZoneInfo(rotation.timezone)


def handoff_at(rotation: OnCallRotation, k: int) -> datetime:
    """The instant (UTC) of hand-off number k; hand-off 0 is ``starts_at``."""
    zone = _zone(rotation)
    local_start = rotation.starts_at.astimezone(zone).replace(tzinfo=None)
    local = local_start + k * timedelta(hours=rotation.handoff_hours)
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def shift_index(rotation: OnCallRotation, at: datetime) -> int | None:
    """Which shift (0, 1, 2, …) covers ``at``; None before the rotation starts."""
    if at < rotation.starts_at:
        return None
    zone = _zone(rotation)
    local_start = rotation.starts_at.astimezone(zone).replace(tzinfo=None)
    local_at = at.astimezone(zone).replace(tzinfo=None)
    k = max(0, (local_at - local_start) // timedelta(hours=rotation.handoff_hours))
    # The wall-clock estimate can be one off next to a daylight-saving change.
    while k > 0 and at < handoff_at(rotation, k):
        k -= 1
    while at >= handoff_at(rotation, k + 1):
        k += 1
    return k


def _members(rotation: OnCallRotation) -> list:
    # .all() uses a prefetch when the caller made one (oncall_now), else one query.
    return sorted(rotation.members.all(), key=lambda m: m.position)


def _override_at(rotation: OnCallRotation, at: datetime) -> RotationOverride | None:
    covering = [o for o in rotation.overrides.all() if o.starts_at <= at < o.ends_at]
    return max(covering, key=lambda o: (o.created_at, o.pk), default=None)


def scheduled_holder(rotation: OnCallRotation, at: datetime):
    members = _members(rotation)
    k = shift_index(rotation, at)
    if k is None or not members:
        return None
    return members[k % len(members)].user


def rotation_holder(*, rotation: OnCallRotation, at: datetime | None = None):
    """The person on call in this rotation at ``at`` (default: now), or None."""
    at = at or timezone.now()
    if not rotation.is_active:
        return None
    override = _override_at(rotation, at)
    if override is not None:
        return override.user
    return scheduled_holder(rotation, at)


def oncall_holder(*, role: CrisisRole | None = None, role_id: int | None = None, at=None):
    """The person holding the role (``role`` or ``role_id``) at ``at``: the first
    active rotation by priority with one. Three queries whatever the rotations; the
    holder comes with their profile (``person_locale`` reads it without a query)."""
    at = at or timezone.now()
    role_id = role.pk if role is not None else role_id
    rotations = OnCallRotation.objects.filter(role_id=role_id, is_active=True).order_by(
        "priority", "pk"
    )
    people = ("user", "user__profile")
    for rotation in rotations.prefetch_related(
        Prefetch("members", queryset=RotationMember.objects.select_related(*people)),
        Prefetch("overrides", queryset=RotationOverride.objects.select_related(*people)),
    ):
        holder = rotation_holder(rotation=rotation, at=at)
        if holder is not None:
            return holder
    return None


def rotation_next(*, role: CrisisRole, after: AbstractBaseUser, exclude: set[int] = frozenset()):
    """Who to offer ``role`` to when ``after`` cannot take it, or None.

    The next member after ``after`` in the order of the first active rotation of
    the role (by priority) that lists them, going round to the start, skipping
    ``after``, anyone in ``exclude`` (already asked), inactive people and people
    without an e-mail address. When ``after`` is in none of the role's rotations
    (someone handed the role by hand), the role's on-call holder now, on the same
    conditions.
    """
    rotations = role.rotations.filter(is_active=True).order_by("priority", "pk")
    for rotation in rotations.prefetch_related("members__user"):
        users = [m.user for m in _members(rotation)]
        ids = [u.pk for u in users]
        if after.pk not in ids:
            continue
        i = ids.index(after.pk)
        for user in users[i + 1 :] + users[:i]:
            if user.pk != after.pk and user.pk not in exclude and user.is_active and user.email:
                return user
        return None
    holder = oncall_holder(role=role)
    if holder is None or holder.pk == after.pk or holder.pk in exclude:
        return None
    return holder if holder.is_active and holder.email else None


def oncall_now(*, at: datetime | None = None) -> list[tuple[CrisisRole, AbstractBaseUser | None]]:
    """Every role with who holds it now (their profile too, for the phone), in a fixed
    number of queries whatever the number of roles."""
    at = at or timezone.now()
    roles = CrisisRole.objects.prefetch_related(
        "rotations__members__user__profile", "rotations__overrides__user__profile"
    )
    result = []
    for role in roles:
        holder = None
        for rotation in sorted(role.rotations.all(), key=lambda r: (r.priority, r.pk)):
            holder = rotation_holder(rotation=rotation, at=at)
            if holder is not None:
                break
        result.append((role, holder))
    return result


def rotation_shifts(*, rotation: OnCallRotation, start: datetime, end: datetime) -> list[Shift]:
    """The shifts covering [start, end), overrides cut in, consecutive equal ones merged.

    Every instant where the holder may change (a hand-off, an override's start
    or end) splits the range; the holder of each piece is the holder at its start.
    """
    if end <= start or not rotation.is_active:
        return []
    points = {start, end}
    k = shift_index(rotation, start)
    k = 0 if k is None else k
    while True:
        instant = handoff_at(rotation, k)
        if instant >= end:
            break
        if instant > start:
            points.add(instant)
        k += 1
    for o in rotation.overrides.all():
        for instant in (o.starts_at, o.ends_at):
            if start < instant < end:
                points.add(instant)
    ordered = sorted(points)
    shifts: list[Shift] = []
    for a, b in zip(ordered, ordered[1:], strict=False):
        override = _override_at(rotation, a)
        user = override.user if override else scheduled_holder(rotation, a)
        if user is None:
            continue
        is_override = override is not None
        last = shifts[-1] if shifts else None
        if last and last.ends_at == a and last.user == user and last.is_override == is_override:
            shifts[-1] = Shift(user, last.starts_at, b, is_override)
        else:
            shifts.append(Shift(user, a, b, is_override))
    return shifts


def rotation_ical_url(rotation: OnCallRotation) -> str:
    path = reverse("playbooks:rotation-ical", args=[rotation.pk, rotation.ical_token])
    return f"{settings.SITE_URL}{path}"
