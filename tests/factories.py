from __future__ import annotations

import datetime as dt

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from playbooks import models as pb


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    first_name = factory.Sequence(lambda n: f"First{n}")
    last_name = "Responder"
    password = factory.django.Password("pw-for-tests-only")


class CrisisRoleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = pb.CrisisRole
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"role-{n}")
    name = factory.LazyAttribute(lambda r: r.slug.replace("-", " ").title())


class StakeholderGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = pb.StakeholderGroup
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"group-{n}")
    name = factory.LazyAttribute(lambda g: g.slug.title())
    kind = pb.StakeholderGroup.Kind.CUSTOMERS


class StakeholderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = pb.Stakeholder

    group = factory.SubFactory(StakeholderGroupFactory)
    name = factory.Sequence(lambda n: f"Contact {n}")
    email = factory.Sequence(lambda n: f"contact{n}@example.test")


class PlaybookFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = pb.Playbook

    key = factory.Sequence(lambda n: f"playbook-{n}")
    title = factory.Sequence(lambda n: f"Playbook {n}")
    scenario = pb.Scenario.DATA_BREACH


class PlaybookStepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = pb.PlaybookStep

    playbook = factory.SubFactory(PlaybookFactory)
    position = factory.Sequence(lambda n: n + 1)
    phase = pb.Phase.DETECT
    title = factory.Sequence(lambda n: f"Step {n}")


class MessageTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = pb.MessageTemplate

    playbook = factory.SubFactory(PlaybookFactory)
    name = factory.Sequence(lambda n: f"Template {n}")
    audience = factory.SubFactory(StakeholderGroupFactory)
    channel = pb.Channel.EMAIL
    subject = "{incident_reference}: {incident_title}"
    body = "We are looking into {incident_title}."


class OnCallRotationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = pb.OnCallRotation

    name = factory.Sequence(lambda n: f"Rotation {n}")
    role = factory.SubFactory(CrisisRoleFactory)
    starts_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=1))
    handoff_hours = 24
    timezone = "UTC"


class EscalationLevelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = pb.EscalationLevel

    playbook = factory.SubFactory(PlaybookFactory)
    position = factory.Sequence(lambda n: n + 1)
    delay_seconds = 300
    target = pb.EscalationLevel.Target.ROLE_ON_CALL
    role = factory.SubFactory(CrisisRoleFactory)


class RiskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = pb.Risk

    title = factory.Sequence(lambda n: f"Risk {n}")
    category = pb.Scenario.DATA_BREACH
    likelihood = 3
    impact = 3
    velocity = 3
