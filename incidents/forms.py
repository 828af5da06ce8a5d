"""Forms of the war room (incidents/warroom.py): they read input, the services decide."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _

from incidents.models import Incident, Severity
from playbooks.models import CrisisRole, Playbook, Scenario


class IncidentOpenForm(forms.Form):
    playbook = forms.ModelChoiceField(
        label=_("Playbook"),
        queryset=Playbook.objects.filter(status=Playbook.Status.PUBLISHED).order_by(
            "scenario", "title"
        ),
        required=False,
        empty_label=_("No playbook (ad hoc: the on-call crisis manager is paged)"),
        widget=forms.RadioSelect,
    )
    title = forms.CharField(label=_("Title"), max_length=300)
    summary = forms.CharField(
        label=_("What happened"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("What is known now: what, where, since when, who is affected."),
    )
    severity = forms.TypedChoiceField(
        label=_("Severity"), choices=Severity.choices, coerce=int, initial=Severity.SEV2
    )
    confidential = forms.BooleanField(
        label=_("Confidential"),
        required=False,
        help_text=_("Visible only to crisis managers and the people assigned to it."),
    )
    drill = forms.BooleanField(
        label=_("Drill"), required=False, help_text=_("An exercise: e-mails say [DRILL].")
    )

    def playbook_groups(self) -> list[tuple[str, list[Playbook]]]:
        """The published playbooks grouped by scenario, in the scenarios' order."""
        labels = dict(Scenario.choices)
        groups: dict[str, list[Playbook]] = {}
        for playbook in self.fields["playbook"].queryset:
            groups.setdefault(playbook.scenario, []).append(playbook)
        order = list(labels)
        return [
            (labels.get(key, key), items)
            for key, items in sorted(
                groups.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99
            )
        ]

    def chosen_playbook_id(self) -> str:
        value = self["playbook"].value()
        return "" if value in (None, "") else str(value)


class SeverityForm(forms.Form):
    severity = forms.TypedChoiceField(label=_("Severity"), choices=Severity.choices, coerce=int)
    reason = forms.CharField(label=_("Why"), max_length=500, required=False)


class ResolveForm(forms.Form):
    summary = forms.CharField(
        label=_("How it was resolved"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(label=_("Why"), max_length=500, required=False)


class TaskCompleteForm(forms.Form):
    outcome = forms.ChoiceField(
        label=_("Outcome"), choices=[("done", _("Done")), ("skipped", _("Skipped"))]
    )
    note = forms.CharField(label=_("Note"), max_length=1000, required=False)


class NoteForm(forms.Form):
    text = forms.CharField(
        label=_("Add a note to the timeline"),
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class IncidentFilterForm(forms.Form):
    """The list's filters; every value optional, a bad one is ignored."""

    ACTIVE, PAST = "active", "past"

    q = forms.CharField(label=_("Reference or title"), required=False, max_length=200)
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[
            ("", _("All")),
            (ACTIVE, _("Active")),
            (PAST, _("Past (resolved or closed)")),
            *Incident.Status.choices,
        ],
    )
    severity = forms.TypedChoiceField(
        label=_("Severity"),
        required=False,
        coerce=int,
        empty_value=None,
        choices=[("", _("All")), *Severity.choices],
    )
    category = forms.ChoiceField(
        label=_("Category"), required=False, choices=[("", _("All")), *Scenario.choices]
    )
    drill = forms.ChoiceField(
        label=_("Drills"),
        required=False,
        choices=[
            ("", _("Incidents and drills")),
            ("no", _("Real incidents")),
            ("yes", _("Drills")),
        ],
    )


class PersonChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return obj.get_full_name() or obj.get_username()


class RoleAssignForm(forms.Form):
    role = forms.ModelChoiceField(label=_("Role"), queryset=CrisisRole.objects.all())
    user = PersonChoiceField(
        label=_("Person"),
        queryset=get_user_model()
        .objects.filter(is_active=True)
        .order_by("first_name", "last_name", "username"),
    )
