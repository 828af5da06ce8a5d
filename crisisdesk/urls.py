from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from crisisdesk.admin_tools import view_on_site
from incidents import api as incidents_api
from incidents import health, metrics
from incidents.listening import api as listening_api
from playbooks import account
from playbooks import api as playbooks_api

admin.site.site_header = "CrisisDesk"
admin.site.site_title = "CrisisDesk"
admin.site.index_title = _("Crisis preparedness and response")


def favicon(request: HttpRequest) -> HttpResponse:
    return HttpResponsePermanentRedirect(static("crisisdesk/favicon.svg"))


router = DefaultRouter()
router.register("risks", playbooks_api.RiskViewSet, basename="risk")
router.register("roles", playbooks_api.CrisisRoleViewSet, basename="role")
router.register("rotations", playbooks_api.OnCallRotationViewSet, basename="rotation")
router.register("rotation-members", playbooks_api.RotationMemberViewSet, basename="rotationmember")
router.register(
    "rotation-overrides", playbooks_api.RotationOverrideViewSet, basename="rotationoverride"
)
router.register(
    "stakeholder-groups", playbooks_api.StakeholderGroupViewSet, basename="stakeholdergroup"
)
router.register("contacts", playbooks_api.StakeholderViewSet, basename="contact")
router.register("playbooks", playbooks_api.PlaybookViewSet, basename="playbook")
router.register("playbook-steps", playbooks_api.StepViewSet, basename="playbookstep")
router.register("message-templates", playbooks_api.TemplateViewSet, basename="messagetemplate")
router.register(
    "escalation-levels", playbooks_api.EscalationLevelViewSet, basename="escalationlevel"
)
router.register("update-cadences", playbooks_api.CadenceViewSet, basename="updatecadence")
router.register("users", playbooks_api.UserViewSet, basename="user")
router.register("incidents", incidents_api.IncidentViewSet, basename="incident")
router.register("tasks", incidents_api.TaskViewSet, basename="task")
router.register("assignments", incidents_api.AssignmentViewSet, basename="assignment")
router.register("timeline", incidents_api.TimelineViewSet, basename="timeline")
router.register("messages", incidents_api.MessageViewSet, basename="message")
router.register("timers", incidents_api.TimerViewSet, basename="timer")
router.register("exercises", incidents_api.ExerciseViewSet, basename="exercise")
router.register("notifications", incidents_api.NotificationViewSet, basename="notification")
router.register("postmortems", incidents_api.PostMortemViewSet, basename="postmortem")
router.register("action-items", incidents_api.ActionItemViewSet, basename="actionitem")
router.register("subscriptions", incidents_api.SubscriptionViewSet, basename="subscription")
router.register("sources", listening_api.SourceViewSet, basename="source")
router.register("mentions", listening_api.MentionViewSet, basename="mention")
router.register("listening-rules", listening_api.ListeningRuleViewSet, basename="listeningrule")

urlpatterns = [
    path("api/v1/intake/<slug:slug>/", listening_api.IntakeView.as_view(), name="intake"),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/preferences/", account.preferences, name="preferences"),
    path("accounts/language/", account.language_switch, name="language_switch"),
    path(
        "accounts/password/change/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password/change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("accounts/password/reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "accounts/password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "accounts/password/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/password/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    # For load balancers and monitoring: no sign-in, counts and ages only (incidents/health.py).
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Prometheus: a bearer token or a scraper's network (incidents/metrics.py).
    path("metrics", metrics.metrics, name="metrics"),
    # Browsers ask for /favicon.ico whatever the page says.
    path("favicon.ico", favicon),
    path("i18n/", include("django.conf.urls.i18n")),
    path("playbooks/", include("playbooks.urls")),
    path("incidents/", include("incidents.urls")),
    path("mentions/", include("incidents.listening.urls")),
    # Public, no sign-in: the status page, its feeds and subscriptions.
    path("status/", include("incidents.status_urls")),
    # After incidents.urls: /incidents/trends/ is not an incident reference.
    path("", include("incidents.warroom_urls")),
    # Before the admin's own route of the same name: objects resolved through the
    # visibility selectors, one 404 for hidden and made-up alike.
    path(
        "admin/r/<path:content_type_id>/<path:object_id>/",
        admin.site.admin_view(view_on_site),
        name="view_on_site",
    ),
    path("admin/", admin.site.urls),
]
