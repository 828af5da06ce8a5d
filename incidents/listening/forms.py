from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _

from crisisdesk.csvimport import MAX_CSV_BYTES
from incidents.listening import inbox
from incidents.listening.models import MAX_TEXT_CHARS, Mention, MentionChannel, Source
from incidents.models import Incident, Message
from incidents.selectors import incidents_visible_to
from incidents.timeline import actor_name
from playbooks.models import MessageTemplate, Risk


class MentionFilterForm(forms.Form):
    """The list's filters; every value optional, a bad one is ignored."""

    source = forms.ModelChoiceField(
        label=_("Source"), required=False, queryset=Source.objects.order_by("name"),
        to_field_name="slug", empty_label=_("All"),
    )  # fmt: skip
    channel = forms.ChoiceField(
        label=_("Channel"), required=False, choices=[("", _("All")), *MentionChannel.choices]
    )
    sentiment = forms.TypedChoiceField(
        label=_("Sentiment"), required=False, coerce=int, empty_value=None,
        choices=[("", _("All")), *Mention.Sentiment.choices],
    )  # fmt: skip
    risk = forms.ModelChoiceField(
        label=_("Risk"), required=False, queryset=Risk.objects.order_by("title"),
        empty_label=_("All"),
    )  # fmt: skip
    incident = forms.ModelChoiceField(
        label=_("Incident"), required=False, queryset=Incident.objects.none(),
        to_field_name="reference", empty_label=_("All"),
    )  # fmt: skip
    state = forms.ChoiceField(
        label=_("State"), required=False, choices=[("", _("All")), *Mention.State.choices]
    )
    mine = forms.BooleanField(label=_("Assigned to me"), required=False)

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        # Only incidents this person may see: a hidden one is no choice at all.
        self.fields["incident"].queryset = (
            incidents_visible_to(user)
            .filter(mentions__isnull=False)
            .distinct()
            .order_by("-opened_at")
            if user is not None
            else Incident.objects.none()
        )


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(
        label=_("Assign to"), required=False, queryset=get_user_model().objects.none(),
        empty_label=_("Nobody"),
    )  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = inbox.assignable_people()
        self.fields["assignee"].label_from_instance = actor_name


class NeedsReplyForm(forms.Form):
    incident = forms.ModelChoiceField(
        label=_("Incident"), required=False, queryset=Incident.objects.none(),
        to_field_name="reference", empty_label=_("The comment's own"),
    )  # fmt: skip

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["incident"].queryset = (
            incidents_visible_to(user)
            .filter(status__in=Incident.ACTIVE_STATUSES)
            .order_by("-opened_at")
        )


class NoReplyForm(forms.Form):
    reason = forms.ChoiceField(label=_("Why no reply"), choices=Mention.NoReplyReason.choices)
    note = forms.CharField(label=_("Note"), required=False, max_length=inbox.NOTE_MAX)


class DismissForm(forms.Form):
    reason = forms.CharField(label=_("Why it is a false positive"), max_length=inbox.NOTE_MAX)


class ReplyDraftForm(forms.Form):
    template = forms.ModelChoiceField(
        label=_("Reply template"), required=False, queryset=MessageTemplate.objects.none(),
        empty_label=_("None: write it"),
    )  # fmt: skip
    body = forms.CharField(
        label=_("Reply"), required=False, max_length=Message.BODY_MAX,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Leave empty to start from the template, then make it specific."),
    )  # fmt: skip

    def __init__(self, *args, mention=None, **kwargs):
        super().__init__(*args, **kwargs)
        if mention is not None:
            self.fields["template"].queryset = inbox.reply_templates(mention).order_by(
                "name", "language"
            )


class ReplyPublishForm(forms.Form):
    url = forms.URLField(
        label=_("Address of the reply"), required=False, max_length=2000,
        assume_scheme="https",
        help_text=_("CrisisDesk does not post: paste the link of the reply you posted."),
    )  # fmt: skip
    by_email = forms.BooleanField(label=_("Sent by e-mail instead"), required=False)


class MentionAddForm(forms.Form):
    text = forms.CharField(
        label=_("What was said"),
        max_length=MAX_TEXT_CHARS,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    channel = forms.ChoiceField(label=_("Channel"), choices=MentionChannel.choices)
    author = forms.CharField(label=_("Author"), max_length=200, required=False)
    url = forms.URLField(label=_("Address"), max_length=2000, required=False, assume_scheme="https")
    language = forms.ChoiceField(
        label=_("Language"), required=False,
        choices=[("", _("Unknown")), *settings.LANGUAGES],
    )  # fmt: skip
    sentiment = forms.TypedChoiceField(
        label=_("Sentiment"), required=False, coerce=int, empty_value=None,
        choices=[("", _("Work it out")), *Mention.Sentiment.choices],
    )  # fmt: skip
    reach = forms.IntegerField(label=_("Reach"), required=False, min_value=0, max_value=10**10)


class MentionImportForm(forms.Form):
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_(
            "Columns: text (required), id, channel, author, url, language, sentiment, reach, "
            "published_at. Nothing is written unless every row is good."
        ),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_CSV_BYTES:
            raise forms.ValidationError(
                _("The file is larger than %(n)s bytes: split it."), params={"n": MAX_CSV_BYTES}
            )
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise forms.ValidationError(_("The file is not UTF-8 text.")) from None
