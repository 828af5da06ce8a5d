from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class IncidentsConfig(AppConfig):
    name = "incidents"
    verbose_name = _("Response")

    def ready(self) -> None:
        # Imported here, not at the top: models cannot load before the app registry.
        from django.db.models.signals import post_migrate, post_save

        from incidents.models import Incident
        from incidents.permissions import on_post_migrate
        from incidents.statuscache import on_incident_saved

        post_migrate.connect(on_post_migrate, sender=self, dispatch_uid="incidents-groups")
        post_save.connect(on_incident_saved, sender=Incident, dispatch_uid="incidents-status")
