"""Writes: starting, editing, reviewing and publishing post-mortems; action items."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from incidents.models import (
    ActionItem,
    Incident,
    PostMortem,
    PostMortemRevision,
    TimelineEntry,
)
from incidents.postmortem.facts import report_build
from incidents.postmortem.render import report_markdown
from incidents.timeline import timeline_add
from playbooks.models import Playbook
from playbooks.services import playbook_new_version


def _narrative_of(postmortem: PostMortem) -> dict:
    return {name: getattr(postmortem, name) for name in PostMortem.NARRATIVE}


@transaction.atomic
def postmortem_start(*, incident: Incident, actor: AbstractBaseUser | None = None) -> PostMortem:
    """Start (or return) an incident's post-mortem; called on resolve and on demand."""
    postmortem, created = PostMortem.objects.get_or_create(
        incident=incident, defaults={"updated_by": actor}
    )
    if created:
        timeline_add(
            incident=incident,
            kind=TimelineEntry.Kind.NOTE,
            actor=actor,
            text=_("Post-mortem started."),
            data={"postmortem_id": postmortem.pk},
        )
    return postmortem


def _locked(postmortem: PostMortem) -> PostMortem:
    return PostMortem.objects.select_for_update().get(pk=postmortem.pk)


@transaction.atomic
def postmortem_edit(
    *, postmortem: PostMortem, actor: AbstractBaseUser, **narrative: str
) -> PostMortem:
    """Change narrative sections. Editing a published report starts the next revision."""
    unknown = set(narrative) - set(PostMortem.NARRATIVE)
    if unknown:
        raise ValidationError(
            {name: _("Not a section of the post-mortem.") for name in sorted(unknown)}
        )
    postmortem = _locked(postmortem)
    changed = {k: v for k, v in narrative.items() if getattr(postmortem, k) != v}
    if not changed:
        return postmortem
    if postmortem.status == PostMortem.Status.PUBLISHED:
        postmortem.revision += 1
        postmortem.status = PostMortem.Status.DRAFT
        postmortem.submitted_at = None
    elif postmortem.status == PostMortem.Status.IN_REVIEW:
        postmortem.status = PostMortem.Status.DRAFT
        postmortem.submitted_at = None
    for name, value in changed.items():
        setattr(postmortem, name, value)
    postmortem.updated_by = actor
    postmortem.save()
    return postmortem


@transaction.atomic
def postmortem_submit(*, postmortem: PostMortem, actor: AbstractBaseUser) -> PostMortem:
    postmortem = _locked(postmortem)
    if postmortem.status != PostMortem.Status.DRAFT:
        raise ValidationError(_("Only a draft can be submitted for review."))
    if not postmortem.summary.strip():
        raise ValidationError({"summary": _("Write the summary before asking for review.")})
    postmortem.status = PostMortem.Status.IN_REVIEW
    postmortem.submitted_at = timezone.now()
    postmortem.updated_by = actor
    postmortem.save()
    return postmortem


@transaction.atomic
def postmortem_publish(*, postmortem: PostMortem, actor: AbstractBaseUser) -> PostMortemRevision:
    """Freeze the report: the narrative and the whole report as it reads now."""
    # A missing permission is refused as such (403), before any rule (400).
    if not actor.has_perm("incidents.publish_postmortem"):
        raise PermissionDenied(_("You need the permission to publish post-mortems."))
    postmortem = _locked(postmortem)
    if postmortem.status != PostMortem.Status.IN_REVIEW:
        raise ValidationError(_("Only a post-mortem in review can be published."))
    now = timezone.now()
    postmortem.status = PostMortem.Status.PUBLISHED
    postmortem.published_at = now
    postmortem.published_by = actor
    postmortem.save()
    with translation.override(settings.LANGUAGE_CODE):
        markdown = report_markdown(report_build(postmortem.incident, now=now))
    revision = PostMortemRevision.objects.create(
        postmortem=postmortem,
        number=postmortem.revision,
        published_at=now,
        published_by=actor,
        narrative=_narrative_of(postmortem),
        markdown=markdown,
    )
    timeline_add(
        incident=postmortem.incident,
        kind=TimelineEntry.Kind.NOTE,
        actor=actor,
        at=now,
        text=_("Post-mortem revision %(n)s published.") % {"n": revision.number},
        data={"postmortem_id": postmortem.pk, "revision": revision.number},
    )
    return revision


# What the team may set on an action item; the rest (done time, the version it
# produced, reminders) the services keep.
ACTION_ITEM_FIELDS = ("title", "description", "owner", "due_on", "kind", "playbook")


def _action_item_apply(item: ActionItem, *, status: str | None, now, **fields) -> None:
    unknown = set(fields) - set(ACTION_ITEM_FIELDS)
    if unknown:
        raise ValidationError({name: _("This field cannot be set.") for name in sorted(unknown)})
    for name, value in fields.items():
        setattr(item, name, value)
    if status is not None:
        if status not in ActionItem.Status.values:
            raise ValidationError({"status": _("Unknown status.")})
        if status != item.status or item.done_at is None:
            # Done is stamped when it becomes done, and only then.
            item.done_at = (item.done_at or now) if status == ActionItem.Status.DONE else None
        item.status = status
    item.full_clean()


@transaction.atomic
def action_item_create(
    *,
    postmortem: PostMortem,
    actor: AbstractBaseUser | None,
    status: str | None = None,
    **fields,
) -> ActionItem:
    """Add an action item to a post-mortem (fields: ``ACTION_ITEM_FIELDS``), on its timeline."""
    now = timezone.now()
    item = ActionItem(postmortem=postmortem, created_at=now)
    _action_item_apply(item, status=status, now=now, **fields)
    item.save()
    timeline_add(
        incident=postmortem.incident,
        kind=TimelineEntry.Kind.NOTE,
        actor=actor,
        at=now,
        text=_("Action item added: “%(t)s”.") % {"t": item.title},
        data={"postmortem_id": postmortem.pk, "action_item_id": item.pk},
    )
    return item


@transaction.atomic
def action_item_update(
    *, item: ActionItem, actor: AbstractBaseUser | None = None, status: str | None = None, **fields
) -> ActionItem:
    """Change an action item's fields and/or status; done items carry when they were done."""
    item = ActionItem.objects.select_for_update().get(pk=item.pk)
    _action_item_apply(item, status=status, now=timezone.now(), **fields)
    item.save()
    return item


def action_item_set_status(*, item: ActionItem, status: str) -> ActionItem:
    return action_item_update(item=item, status=status)


@transaction.atomic
def action_item_revise_playbook(*, item: ActionItem, actor: AbstractBaseUser | None) -> ActionItem:
    """Start the playbook revision an action item asks for: a new draft version, linked."""
    item = ActionItem.objects.select_for_update().get(pk=item.pk)
    if item.playbook_id is None:
        raise ValidationError({"playbook": _("Choose the playbook this item revises.")})
    if item.produced_version_id is not None:
        return item
    latest = (
        Playbook.objects.filter(key=item.playbook.key)
        .exclude(status=Playbook.Status.DRAFT)
        .order_by("-version")
        .first()
        or item.playbook
    )
    draft = playbook_new_version(playbook=latest, actor=actor)
    item.produced_version = draft
    if item.status == ActionItem.Status.OPEN:
        item.status = ActionItem.Status.IN_PROGRESS
    item.save(update_fields=["produced_version", "status"])
    return item
