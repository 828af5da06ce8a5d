from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from django.views.generic import RedirectView

admin.site.site_header = "CrisisDesk"
admin.site.site_title = "CrisisDesk"
admin.site.index_title = _("Crisis preparedness and response")

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("i18n/", include("django.conf.urls.i18n")),
    path("playbooks/", include("playbooks.urls")),
    path("incidents/", include("incidents.urls")),
    path("admin/", admin.site.urls),
]
