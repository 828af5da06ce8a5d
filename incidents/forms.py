"""Forms of the war room (incidents/warroom.py): they read input, the services decide."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.translation import get_language_info
from django.utils.translation import gettext_lazy as _

from incidents.comms import NOT_TRANSLATED, RETURN_COMMENT_MAX, markers_in
from incidents.models import (
    EXERCISE_BRIEF_MAX,
    EXERCISE_MAX_PARTICIPANTS,
    INJECT_TEXT_MAX,
    MAX_INJECT_OFFSET_SECONDS,
    MAX_INJECTS,
    Incident,
    Message,
    Severity,
)
from playbooks.models import (
    Channel,
    CrisisRole,
    MessageTemplate,
    Playbook,
    Scenario,
    StakeholderGroup,
)

SUBJECT_MAX = Message._meta.get_field("subject").max_length


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


# ------------------------------------------------------------------ communications
# The forms of the war room's communications panel (incidents/warroom_comms.py).

# Longest message body the desk takes from a form: a statement, not a book.
MESSAGE_BODY_MAX = Message.BODY_MAX


def _bidi(code: str) -> bool:
    try:
        return bool(get_language_info(code)["bidi"])
    except KeyError:
        return False


class ComposeForm(forms.Form):
    """Draft from one of this incident's playbook templates: it brings audience, channel
    and language; the same template's other languages come along as variants."""

    template = forms.ModelChoiceField(
        label=_("Template"),
        queryset=MessageTemplate.objects.none(),
        error_messages={
            "required": _("Choose a template."),
            "invalid_choice": _("Choose one of this incident's playbook templates."),
        },
    )

    def __init__(self, *args, templates, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template"].queryset = templates


class MessageEditForm(forms.Form):
    """A draft's words: the main text and every other-language variant, all editable."""

    def __init__(self, *args, message: Message, **kwargs):
        initial = {"subject": message.subject, "body": message.body}
        self.variant_languages = sorted(message.translations)
        for code in self.variant_languages:
            variant = message.translations[code]
            initial[f"subject_{code}"] = variant.get("subject", "")
            initial[f"body_{code}"] = variant.get("body", "")
        kwargs.setdefault("initial", initial)
        super().__init__(*args, **kwargs)
        self.message = message
        for code in ["", *self.variant_languages]:
            suffix = f"_{code}" if code else ""
            language = code or message.language
            # The words are in the message's language, whatever the page's.
            words = {"lang": language, "dir": "rtl" if _bidi(language) else "ltr"}
            self.fields["subject" + suffix] = forms.CharField(
                label=_("Subject"),
                required=False,
                max_length=SUBJECT_MAX,
                widget=forms.TextInput(attrs=dict(words)),
            )
            self.fields["body" + suffix] = forms.CharField(
                label=_("Message"),
                max_length=MESSAGE_BODY_MAX,
                error_messages={"required": _("A message needs a body.")},
                widget=forms.Textarea(attrs={"rows": 10, **words}),
            )
        for name, form_field in self.fields.items():
            if self.missing(name) or self.untranslated(name):
                form_field.widget.attrs["aria-describedby"] = f"id_{name}_missing"

    def _value(self, name: str) -> str:
        return self.data.get(name, "") if self.is_bound else self.initial.get(name, "")

    def missing(self, name: str) -> list[str]:
        """The facts still marked missing in a field, as typed (or as stored, unbound)."""
        return markers_in(self._value(name))

    def untranslated(self, name: str) -> list[str]:
        """The facts in a field still to be written in its language."""
        return markers_in(self._value(name), NOT_TRANSLATED)

    def translations(self) -> dict | None:
        """The variants as the message keeps them; None when none of them changed."""
        data = self.cleaned_data
        old = self.message.translations
        new = {
            code: {
                **old[code],
                "subject": data[f"subject_{code}"],
                "body": data[f"body_{code}"],
            }
            for code in self.variant_languages
        }
        return None if new == old else new


class ApproveForm(forms.Form):
    note = forms.CharField(label=_("Note (optional)"), required=False, max_length=300)
    accept_boilerplate = forms.BooleanField(
        label=_("Approve it although it is the template unchanged"), required=False
    )
    approve_own = forms.BooleanField(
        label=_("Approve my own message, as crisis manager"), required=False
    )


class ReturnForm(forms.Form):
    comment = forms.CharField(
        label=_("What should change"),
        max_length=RETURN_COMMENT_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": _("Say what should change: a return needs a comment.")},
    )


class PublishForm(forms.Form):
    where = forms.CharField(
        label=_("Published where (address or note)"),
        max_length=500,
        error_messages={"required": _("Say where it was published (address or note).")},
    )


class ScheduleForm(forms.Form):
    at = forms.DateTimeField(
        label=_("Send at"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        error_messages={
            "required": _("Choose when to send it."),
            "invalid": _("Enter a date and time, e.g. 2026-05-04 14:30."),
        },
    )

    def clean_at(self):
        at = self.cleaned_data["at"]
        if at <= timezone.now():
            raise forms.ValidationError(_("Choose a time in the future."))
        return at


class LanguageForm(forms.Form):
    """One language of a draft: to drop it on purpose, or to add a variant in it."""

    language = forms.ChoiceField(label=_("Language"), choices=settings.LANGUAGES)


class ScratchForm(forms.Form):
    """A message written without a template: the team chooses audience, channel and the
    main text's language; every other language the audience reads starts unwritten."""

    audience = forms.ModelChoiceField(
        label=_("Audience"),
        queryset=StakeholderGroup.objects.order_by("priority", "name"),
        error_messages={"required": _("Choose who it is for.")},
    )
    channel = forms.ChoiceField(label=_("Channel"), choices=Channel.choices)
    language = forms.ChoiceField(label=_("Language of this text"), choices=settings.LANGUAGES)
    subject = forms.CharField(label=_("Subject"), required=False, max_length=SUBJECT_MAX)
    body = forms.CharField(
        label=_("Message"),
        max_length=MESSAGE_BODY_MAX,
        widget=forms.Textarea(attrs={"rows": 8}),
        error_messages={"required": _("Write the message.")},
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("prefix", "scratch")
        super().__init__(*args, **kwargs)


class CorrectForm(forms.Form):
    subject = forms.CharField(label=_("Subject"), required=False, max_length=SUBJECT_MAX)
    body = forms.CharField(
        label=_("The correction"),
        max_length=MESSAGE_BODY_MAX,
        widget=forms.Textarea(attrs={"rows": 6}),
        error_messages={"required": _("Write the correction.")},
    )


class SubscribeForm(forms.Form):
    """The status page's one input: an address, a language, and optionally an incident."""

    email = forms.EmailField(label=_("E-mail address"), max_length=254)
    language = forms.ChoiceField(label=_("Language"), choices=())
    incident = forms.CharField(max_length=32, required=False, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["language"].choices = [
            (code, get_language_info(code)["name_local"]) for code, _name in settings.LANGUAGES
        ]


# ------------------------------------------------------------------ exercises
# The facilitator's forms (incidents/warroom_exercises.py).


class ExercisePlanForm(forms.Form):
    playbook = forms.ModelChoiceField(
        label=_("Playbook"),
        queryset=Playbook.objects.filter(status=Playbook.Status.PUBLISHED).order_by(
            "scenario", "title"
        ),
        help_text=_("The published version rehearsed; its starter injects fill the script."),
    )
    title = forms.CharField(label=_("Title"), max_length=300)
    brief = forms.CharField(
        label=_("Scenario brief"),
        required=False,
        max_length=EXERCISE_BRIEF_MAX,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("What the participants are told at the start."),
    )
    planned_start = forms.DateTimeField(
        label=_("Planned start"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )


class ParticipantForm(forms.Form):
    user = PersonChoiceField(
        label=_("Person"),
        queryset=get_user_model()
        .objects.filter(is_active=True)
        .order_by("first_name", "last_name", "username"),
    )
    role = forms.ModelChoiceField(label=_("Role played"), queryset=CrisisRole.objects.all())


class InjectForm(forms.Form):
    offset_minutes = forms.IntegerField(
        label=_("Minutes after the start"), min_value=0, max_value=MAX_INJECT_OFFSET_SECONDS // 60
    )
    title = forms.CharField(label=_("Title"), max_length=200)
    text = forms.CharField(
        label=_("What happens"),
        max_length=INJECT_TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    roles = forms.ModelMultipleChoiceField(
        label=_("Reaches"),
        queryset=CrisisRole.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: every participant."),
    )
    mentions = forms.JSONField(
        label=_("Public comments it brings"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "dir": "auto"}),
        help_text=_(
            'Into the listening inbox as drill comments when it fires: [{"channel": "review", '
            '"author": "...", "text": "...", "language": "en", "sentiment": "negative"}].'
        ),
    )


ParticipantFormSet = forms.formset_factory(
    ParticipantForm, extra=1, can_delete=True, max_num=EXERCISE_MAX_PARTICIPANTS, validate_max=True
)
InjectFormSet = forms.formset_factory(
    InjectForm, extra=1, can_delete=True, max_num=MAX_INJECTS, validate_max=True
)


class ExerciseEndForm(forms.Form):
    observations = forms.CharField(
        label=_("Facilitator's observations"),
        required=False,
        max_length=EXERCISE_BRIEF_MAX,
        widget=forms.Textarea(attrs={"rows": 5}),
    )
    counts_as_review = forms.BooleanField(
        label=_("This exercise counts as a review of the playbook"), required=False
    )
