"""A person's own pages: preferences (language, time zone, phone) and the
language switch every page offers. Password reset and change are Django's
auth views in the war room's look (templates/registration/)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from playbooks.models import UserProfile
from playbooks.people import preferences_save, profile_for, remember, time_zone_names


class PreferencesForm(forms.ModelForm):
    time_zone = forms.ChoiceField(label=gettext_lazy("Time zone"), required=False)

    class Meta:
        model = UserProfile
        fields = ("language", "time_zone", "phone")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["language"].choices = [
            ("", _("As my browser asks (%(code)s)") % {"code": settings.LANGUAGE_CODE})
        ] + [(code, name) for code, name in settings.LANGUAGES]
        self.fields["time_zone"].choices = [
            ("", _("The desk's time zone (%(zone)s)") % {"zone": settings.TIME_ZONE})
        ] + [(name, name) for name in time_zone_names()]
        self.fields["phone"].widget.attrs.update({"autocomplete": "tel", "inputmode": "tel"})


def _next_url(request: HttpRequest) -> str:
    """Back to the page the switch was on: the form carries no address, so a page
    never differs by its own URL (a hidden incident's 404 is byte-for-byte the
    made-up one's); the same-origin Referer says where it was."""
    target = request.POST.get("next") or request.META.get("HTTP_REFERER") or "/"
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return "/"
    return target


@login_required
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest) -> HttpResponse:
    profile = profile_for(request.user)
    form = PreferencesForm(request.POST or None, instance=profile)
    if request.method == "POST" and form.is_valid():
        try:
            profile = preferences_save(user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            remember(request, profile)
            messages.success(request, _("Your preferences are saved."))
            response = redirect("preferences")
            _set_language_cookie(response, profile.language)
            return response
    return render(
        request,
        "registration/preferences.html",
        {"form": form, "zone": timezone.get_current_timezone_name()},
    )


def _set_language_cookie(response: HttpResponse, language: str) -> None:
    if language:
        response.set_cookie(
            settings.LANGUAGE_COOKIE_NAME,
            language,
            max_age=settings.LANGUAGE_COOKIE_AGE,
            samesite="Lax",
        )
    else:
        response.delete_cookie(settings.LANGUAGE_COOKIE_NAME)


@require_POST
def language_switch(request: HttpRequest) -> HttpResponse:
    """Change the language from any page: remembered in a cookie, and for a
    signed-in person in their profile too, so it follows them to other browsers
    and to the e-mails the desk writes them."""
    language = request.POST.get("language", "")
    if language not in dict(settings.LANGUAGES):
        messages.error(request, _("Choose one of the languages offered."))
        return redirect(_next_url(request))
    if request.user.is_authenticated:
        profile = profile_for(request.user)
        profile.language = language
        profile.save(update_fields=["language"])
        remember(request, profile)
    response = redirect(_next_url(request))
    _set_language_cookie(response, language)
    return response
